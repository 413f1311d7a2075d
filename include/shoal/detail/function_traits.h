// Return and parameter types of function and member function pointers.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>

namespace shoal::detail {

template <typename F>
struct FunctionTraits;  // not a function pointer: no traits

template <typename R, typename... A>
struct FunctionTraits<R (*)(A...)> {
  using Return = R;
  using Params = std::tuple<A...>;
  using Class = void;
  static constexpr std::size_t kArity = sizeof...(A);
};
template <typename R, typename... A>
struct FunctionTraits<R (*)(A...) noexcept> : FunctionTraits<R (*)(A...)> {};

template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...)> {
  using Return = R;
  using Params = std::tuple<A...>;
  using Class = C;
  static constexpr std::size_t kArity = sizeof...(A);
};
template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...) const> : FunctionTraits<R (C::*)(A...)> {};
template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...) noexcept> : FunctionTraits<R (C::*)(A...)> {};
template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...) const noexcept> : FunctionTraits<R (C::*)(A...)> {};
template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...)&> : FunctionTraits<R (C::*)(A...)> {};
template <typename R, typename C, typename... A>
struct FunctionTraits<R (C::*)(A...) const&> : FunctionTraits<R (C::*)(A...)> {};

template <typename F>
concept FunctionPointer = std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;
template <typename M>
concept MethodPointer = std::is_member_function_pointer_v<M>;

}  // namespace shoal::detail
