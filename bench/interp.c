/* interp: the heap of a garbage-collected interpreter running a tree
 * workload (ruby's red-black tree benchmarks are the model). Objects are
 * 40-byte slots in object pages of 64 KiB, each page aligned to 64 KiB
 * (aligned_alloc, as ruby's heap pages are) and described by a small
 * malloc'd record; an object's string bytes (24..200 B) and its array of
 * values (1..8 words, grown by realloc now and then) are separate malloc'd
 * blocks. Each operation draws a key in [0, 2 * working_set): it inserts
 * the key into a binary search tree if absent (random keys keep the tree
 * balanced on average) and deletes it if present, so the tree holds about
 * working_set nodes; either way it makes two temporary string objects that
 * die at once. A deleted node and the temporaries stay in their slots until
 * the next collection: when no page has a free slot, a mark-and-sweep
 * collection runs if at least a third of the slots can be dead, otherwise
 * a page is added. The sweep frees the dead objects' strings and arrays in
 * page order, not in allocation order, and frees pages left with no live
 * object. One operation = one tree operation with its allocations.
 *
 * usage: interp iterations [working_set=100000] [seed=1]
 *
 * The checksum sums the keys and string bytes read back before each free
 * and the tree's shape at the end: it depends on the arguments alone. */
#include "bench.h"

#define USAGE "interp iterations [working_set=100000] [seed=1]"
#define PAGE_BYTES 65536
#define SLOT_BYTES 40
#define SLOTS_PER_PAGE (PAGE_BYTES / SLOT_BYTES)
#define STR_MIN 24
#define STR_MAX 200
#define ARRAY_MAX 8
#define TEMPS_PER_OP 2
#define GROW_ONE_IN 16

typedef struct obj {
  struct obj *left, *right; /* free slot: right links the page's free list */
  unsigned char *str;       /* NULL: the slot is free */
  uint64_t *array;
  uint32_t key;
  uint16_t str_len;
  uint8_t array_len;
  uint8_t mark;
} obj_t;
_Static_assert(sizeof(obj_t) == SLOT_BYTES, "an object is one 40-byte slot");

typedef struct page {
  obj_t *slots; /* PAGE_BYTES, aligned to PAGE_BYTES */
  obj_t *free;
  uint32_t live;
  struct page *next;
} page_t;

static struct {
  bench_rng_t rng;
  page_t *pages;
  size_t npages;
  size_t tree_nodes;
  obj_t *root;
  obj_t **stack; /* mark stack */
  size_t stack_cap;
  uint64_t sum;
  uint64_t gcs;
} vm;

static void page_add(void) {
  page_t *pg = bench_xmalloc(sizeof *pg);
  pg->slots = aligned_alloc(PAGE_BYTES, PAGE_BYTES);
  if (!pg->slots) {
    fprintf(stderr, "aligned_alloc(%d, %d) failed: %s\n", PAGE_BYTES, PAGE_BYTES,
            strerror(errno));
    exit(1);
  }
  pg->free = NULL;
  for (size_t i = SLOTS_PER_PAGE; i-- > 0;) {
    pg->slots[i].str = NULL;
    pg->slots[i].right = pg->free;
    pg->free = &pg->slots[i];
  }
  pg->live = 0;
  pg->next = vm.pages;
  vm.pages = pg;
  vm.npages++;
}

static void obj_release(obj_t *o) {
  vm.sum += bench_readback(o->str, o->str_len) + o->key + o->array[o->array_len - 1];
  free(o->str);
  free(o->array);
  o->str = NULL;
}

static void mark_all(void) {
  size_t n = 0;
  if (vm.root) vm.stack[n++] = vm.root;
  while (n) {
    obj_t *o = vm.stack[--n];
    o->mark = 1;
    if (n + 2 > vm.stack_cap) {
      vm.stack_cap *= 2;
      vm.stack = realloc(vm.stack, vm.stack_cap * sizeof *vm.stack);
      if (!vm.stack) exit(1);
    }
    if (o->left) vm.stack[n++] = o->left;
    if (o->right) vm.stack[n++] = o->right;
  }
}

/* Sweeps every page: dead objects' blocks freed, empty pages freed. */
static void collect(void) {
  vm.gcs++;
  mark_all();
  for (page_t **pp = &vm.pages; *pp;) {
    page_t *pg = *pp;
    pg->free = NULL;
    pg->live = 0;
    for (size_t i = SLOTS_PER_PAGE; i-- > 0;) {
      obj_t *o = &pg->slots[i];
      if (o->str && o->mark) {
        o->mark = 0;
        pg->live++;
        continue;
      }
      if (o->str) obj_release(o);
      o->right = pg->free;
      pg->free = o;
    }
    if (pg->live == 0) {
      *pp = pg->next;
      free(pg->slots);
      free(pg);
      vm.npages--;
      continue;
    }
    pp = &pg->next;
  }
}

static obj_t *obj_new(uint32_t key) {
  page_t *pg = vm.pages;
  while (pg && !pg->free) pg = pg->next;
  if (!pg) {
    /* Every slot is taken: collect if at least a third can be dead,
     * otherwise grow the heap by a page. */
    if (vm.tree_nodes * 3 <= vm.npages * SLOTS_PER_PAGE * 2 && vm.npages) {
      collect();
      for (pg = vm.pages; pg && !pg->free; pg = pg->next) {
      }
    }
    if (!pg) {
      page_add();
      pg = vm.pages;
    }
  }
  obj_t *o = pg->free;
  pg->free = o->right;
  pg->live++;
  uint64_t r = bench_rng_next(&vm.rng);
  o->left = o->right = NULL;
  o->key = key;
  o->mark = 0;
  /* Short strings are common, long ones rare. */
  size_t span = STR_MAX - STR_MIN + 1;
  o->str_len = (uint16_t)(STR_MIN + ((r & 0xffff) % span) * ((r >> 16) & 0xffff) / 0x10000);
  o->str = bench_xmalloc(o->str_len);
  bench_touch(o->str, o->str_len, r ^ key);
  o->array_len = (uint8_t)(1 + (r >> 32) % ARRAY_MAX);
  o->array = bench_xmalloc(o->array_len * sizeof *o->array);
  for (unsigned i = 0; i < o->array_len; i++) o->array[i] = key + i;
  return o;
}

/* Unlinks the node holding key from the tree, if any: returns whether. */
static int tree_delete(uint32_t key) {
  obj_t **link = &vm.root;
  while (*link && (*link)->key != key) link = key < (*link)->key ? &(*link)->left : &(*link)->right;
  obj_t *d = *link;
  if (!d) return 0;
  if (!d->left || !d->right) {
    *link = d->left ? d->left : d->right;
  } else {
    /* Replace by the successor, itself unlinked from d's right subtree. */
    obj_t **sl = &d->right;
    while ((*sl)->left) sl = &(*sl)->left;
    obj_t *s = *sl;
    *sl = s->right;
    s->left = d->left;
    s->right = d->right;
    *link = s;
  }
  d->left = d->right = NULL; /* garbage until the next collection */
  vm.tree_nodes--;
  return 1;
}

static void tree_insert(uint32_t key) {
  obj_t **link = &vm.root;
  while (*link) link = key < (*link)->key ? &(*link)->left : &(*link)->right;
  obj_t *o = obj_new(key);
  *link = o;
  vm.tree_nodes++;
}

static obj_t *tree_find(uint32_t key) {
  obj_t *o = vm.root;
  while (o && o->key != key) o = key < o->key ? o->left : o->right;
  return o;
}

static uint64_t tree_shape(const obj_t *o, uint64_t depth) {
  return o ? depth * o->key + tree_shape(o->left, depth + 1) + tree_shape(o->right, depth + 1) : 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  uint64_t ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 30, USAGE) : 100000;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  bench_rng_seed(&vm.rng, seed);
  vm.stack_cap = 1024;
  vm.stack = bench_xmalloc(vm.stack_cap * sizeof *vm.stack);

  double t0 = bench_now();
  for (uint64_t i = 0; i < iters; i++) {
    uint32_t key = (uint32_t)bench_rng_range(&vm.rng, 0, 2 * ws - 1);
    obj_t *o = tree_find(key);
    if (!o || !tree_delete(key)) {
      tree_insert(key);
    } else if (bench_rng_next(&vm.rng) % GROW_ONE_IN == 0) {
      /* The deleted node's value array grows before it dies (an append). */
      size_t n = o->array_len + 1u;
      if (n <= 255) {
        uint64_t *a = realloc(o->array, n * sizeof *a);
        if (!a) exit(1);
        a[n - 1] = key;
        o->array = a;
        o->array_len = (uint8_t)n;
      }
    }
    for (unsigned t = 0; t < TEMPS_PER_OP; t++) obj_new(key + t); /* dies at once */
  }
  collect(); /* the run's garbage */
  double secs = bench_now() - t0;

  vm.sum += tree_shape(vm.root, 1);
  /* Drop the tree: the last collection frees every object and page. */
  vm.root = NULL;
  collect();
  free(vm.stack);
  char extra[48];
  snprintf(extra, sizeof extra, " gcs=%" PRIu64, vm.gcs);
  bench_report_extra("interp", (double)iters, secs, extra, vm.sum);
  return 0;
}
