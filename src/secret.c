/* Per-process secrets: see secret.h. */
#include "secret.h"

#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>

uintptr_t hak_secret_list;
uintptr_t hak_secret_free_tag;
uint64_t hak_secret_large;
static _Atomic uint64_t random_state;
static _Atomic bool secret_ready;

uint64_t secret_random(void)
{
  return secret_mix(atomic_fetch_add_explicit(&random_state, 0x9e3779b97f4a7c15ull,
                                              memory_order_relaxed));
}

void secret_init(void)
{
  if (atomic_load_explicit(&secret_ready, memory_order_acquire))
    return;
  uint64_t seed[2] = { 0, 0 };
  if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
    /* No getrandom (old kernel, seccomp) or entropy not ready yet: the
     * kernel's per-exec random bytes, mixed with the clock and an address. */
    const uint64_t *r = (const uint64_t *)getauxval(AT_RANDOM);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed[0] = (r ? r[0] : 0) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts;
    seed[1] = (r ? r[1] : 0) ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&hak_secret_list;
  }
  uint64_t s = seed[0] ^ secret_mix(seed[1]);
  /* The top bit set: the end of a list (slab_list_end_block, whose link
   * word is 0) then decodes outside every slot, like a corrupted link. */
  hak_secret_list = (uintptr_t)secret_mix(s += 0x9e3779b97f4a7c15ull) | (uintptr_t)1 << 63;
  /* A tag of zero would match every zeroed block. */
  hak_secret_free_tag = (uintptr_t)secret_mix(s += 0x9e3779b97f4a7c15ull) | 1;
  hak_secret_large = secret_mix(s += 0x9e3779b97f4a7c15ull);
  atomic_store_explicit(&random_state, secret_mix(s += 0x9e3779b97f4a7c15ull),
                        memory_order_relaxed);
  atomic_store_explicit(&secret_ready, true, memory_order_release);
}
