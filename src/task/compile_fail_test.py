#!/usr/bin/env python3
"""Compiles compile_fail.cc once per case and checks that each bad case fails
with shoal's readable message (and that the control case compiles).

usage: compile_fail_test.py SOURCE INCLUDE_DIR COMPILER [COMPILER ARGS...]
"""
import subprocess
import sys

CASES = {
    "OK": None,
    "SERIALIZE": ["shoal: this type cannot be serialized", "NotSerializable<NotSerializableThing>"],
    "NESTED": ["shoal: this type cannot be serialized", "NotSerializable<NotSerializableThing>"],
    "REGISTER": ["shoal: this type cannot be serialized", "NotSerializable<NotSerializableThing>"],
    "ARGUMENT_TYPE": ["does not convert to the function's parameter", "CheckArgument<1, int"],
    "ARGUMENT_COUNT": ["different number of arguments"],
    "REF_TYPE": ["an ObjectRef<T> argument must hold the parameter's type"],
    "LAMBDA": ["takes a function registered with SHOAL_REMOTE"],
}


def main():
    source, include_dir, compiler = sys.argv[1], sys.argv[2], sys.argv[3:]
    failures = 0
    for case, expected in CASES.items():
        cmd = compiler + ["-std=c++20", "-fsyntax-only", "-I", include_dir, "-DSHOAL_CASE_" + case, source]
        result = subprocess.run(cmd, capture_output=True, text=True)
        output = result.stdout + result.stderr
        if expected is None:
            ok = result.returncode == 0
            why = "" if ok else "the control case does not compile:\n" + output[:3000]
        else:
            missing = [text for text in expected if text not in output]
            ok = result.returncode != 0 and not missing
            why = "compiled" if result.returncode == 0 else "message lacks " + repr(missing) + ":\n" + output[:3000]
        print(("ok    " if ok else "FAIL  ") + case + ("" if ok else ": " + why))
        failures += 0 if ok else 1
    print(f"{len(CASES) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
