// Injected time and randomness. Pure cores never read a clock or a global
// RNG; they are handed a Clock and an Rng (or plain values) by their owner,
// so a seed reproduces a whole run.
#pragma once

#include <cstdint>

namespace shoal {

// Milliseconds/microseconds on a monotonic clock, plus wall time for records
// shown to people. Implementations must be usable from the owning thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t now_ms() const = 0;       // monotonic
  virtual uint64_t now_us() const = 0;       // monotonic
  virtual uint64_t wall_now_ms() const = 0;  // Unix epoch
};

class SystemClock final : public Clock {
 public:
  uint64_t now_ms() const override;
  uint64_t now_us() const override;
  uint64_t wall_now_ms() const override;
};

// A clock that only moves when told to; for tests and simulations.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ms = 0) : now_us_(start_ms * 1000) {}
  uint64_t now_ms() const override { return now_us_ / 1000; }
  uint64_t now_us() const override { return now_us_; }
  uint64_t wall_now_ms() const override { return 1'700'000'000'000ull + now_us_ / 1000; }
  void advance_ms(uint64_t ms) { now_us_ += ms * 1000; }
  void advance_us(uint64_t us) { now_us_ += us; }

 private:
  uint64_t now_us_;
};

class Rng {
 public:
  virtual ~Rng() = default;
  virtual uint64_t next_u64() = 0;
  // Uniform in [0, bound); bound must be > 0.
  uint64_t uniform(uint64_t bound);
  // Uniform in [0, 1).
  double uniform_double();
};

// xoshiro256** seeded through splitmix64: fast, small, reproducible.
class SeededRng final : public Rng {
 public:
  explicit SeededRng(uint64_t seed);
  uint64_t next_u64() override;

 private:
  uint64_t state_[4];
};

// A seed from the operating system's entropy source.
uint64_t random_seed();

}  // namespace shoal
