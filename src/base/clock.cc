#include "base/clock.h"

#include <sys/random.h>

#include <chrono>

#include "base/assert.h"

namespace shoal {

uint64_t SystemClock::now_ms() const { return now_us() / 1000; }

uint64_t SystemClock::now_us() const {
  auto t = std::chrono::steady_clock::now().time_since_epoch();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(t).count());
}

uint64_t SystemClock::wall_now_ms() const {
  auto t = std::chrono::system_clock::now().time_since_epoch();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(t).count());
}

uint64_t Rng::uniform(uint64_t bound) {
  SHOAL_ASSERT(bound > 0);
  // Lemire's nearly divisionless method would be faster; rejection keeps it exact.
  uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
  uint64_t x;
  do {
    x = next_u64();
  } while (x >= limit);
  return x % bound;
}

double Rng::uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

SeededRng::SeededRng(uint64_t seed) {
  for (auto& s : state_) s = splitmix64(seed);
}

uint64_t SeededRng::next_u64() {
  uint64_t result = rotl(state_[1] * 5, 7) * 9;
  uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

uint64_t random_seed() {
  uint64_t seed = 0;
  ssize_t n = getrandom(&seed, sizeof(seed), 0);
  SHOAL_ASSERT(n == static_cast<ssize_t>(sizeof(seed)), n);
  return seed;
}

}  // namespace shoal
