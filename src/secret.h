/* Per-process secrets and randomness for hardening.
 *
 * secret_init draws 128 bits from getrandom(2) (falling back to the
 * kernel's AT_RANDOM bytes mixed with the clock and an address when
 * getrandom is unavailable) and derives every secret from them.  It runs
 * once, inside hak_init, before any slab or large block exists; it never
 * allocates.  After it the secrets are constant for the life of the
 * process (a forked child keeps its parent's, as its heap holds blocks
 * encoded with them), so readers need no synchronisation.
 *
 * What each secret protects:
 *  - list: free-list and remote-stack links are stored XOR-ed with it and
 *    with the block's own address, so a write into a freed block cannot
 *    name an address of the attacker's choosing; its top bit is set, so
 *    that the end of a local list decodes outside every slot (slab.h);
 *  - free_tag: XOR-ed with a free block's address, written into its
 *    second word (slab_free_tag); a free that finds it there is a double
 *    free, and a copy of it at another address matches nothing;
 *  - large: the check word of a large block's in-band header. */
#ifndef HAKMEM_SECRET_H
#define HAKMEM_SECRET_H

#include "hakmem_internal.h"

/* Whether free lists are encoded and checked (configure --disable-hardening
 * turns it off, for measuring its cost only). */
#ifndef HAK_HARDENING
#define HAK_HARDENING 1
#endif
static const bool hak_hardened = HAK_HARDENING;

/* Separate variables rather than one struct: the fast paths reach each
 * with a single RIP-relative operand. */
extern HAK_HIDDEN uintptr_t hak_secret_list;
extern HAK_HIDDEN uintptr_t hak_secret_free_tag;
extern HAK_HIDDEN uint64_t hak_secret_large;

/* Fills the secrets; idempotent. */
void secret_init(void);
/* 64 random bits from a generator seeded by secret_init (not for keys:
 * placement jitter and the like).  Thread-safe, lock-free. */
uint64_t secret_random(void);
/* A 64-bit mix of x (splitmix64's finaliser). */
HAK_INLINE uint64_t secret_mix(uint64_t x)
{
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

#endif
