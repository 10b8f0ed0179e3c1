/* hakmemctl profile: heap profiles of a program run under hakmem, or of a
 * running process.
 *
 *   hakmemctl profile [--prefix P] [--sample-kb N] [--interval-mb N]
 *                     [--leak] [--no-svg] -- COMMAND [ARG]...
 *     runs COMMAND with libhakmem preloaded and prof = 1, waits for it,
 *     and leaves its exit profile, P.PID.exit.heap, with an SVG call
 *     graph made by google-pprof --svg beside it (of the space allocated
 *     when nothing was live at exit).
 *
 *   hakmemctl profile --pid PID [--timeout SECONDS] [--no-svg]
 *     asks a running process (started with prof = 1) for a profile: finds
 *     hakmem_prof_control in its libhakmem through /proc/PID/maps and the
 *     library's dynamic symbol table, adds one to its request counter
 *     with process_vm_writev(2), and waits until the process says it
 *     wrote the profile (at its next sample).  No signal is sent; the
 *     permission needed is ptrace's.
 *
 * The layout of the control block is src/prof.h's. */
#include "hakmemctl_profile.h"
#include "live_reader.h"
#include "prof.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef HAKMEM_LIBDIR
#define HAKMEM_LIBDIR "/usr/lib"
#endif

static void profile_usage(FILE *f)
{
  fputs("usage: hakmemctl profile [--prefix PREFIX] [--sample-kb N] [--interval-mb N] [--leak]\n"
        "                         [--no-svg] -- COMMAND [ARG]...\n"
        "       hakmemctl profile --pid PID [--timeout SECONDS] [--no-svg]\n",
        f);
}

/* Whether the profile holds sampled allocations but no byte still live:
 * its header, "heap profile: LIVE: LIVE_BYTES [ ALLOCS: ALLOC_BYTES ] @
 * ...", from a program that freed everything before it exited. */
static bool nothing_live(const char *profile)
{
  FILE *f = fopen(profile, "re");
  if (!f)
    return false;
  long live, live_bytes, allocs, alloc_bytes;
  int n = fscanf(f, "heap profile: %ld: %ld [ %ld: %ld ]", &live, &live_bytes, &allocs, &alloc_bytes);
  fclose(f);
  return n == 4 && live_bytes == 0 && alloc_bytes > 0;
}

/* Whether name (no slash in it) is an executable in a directory of
 * PATH, as execvp looks for it; if so, its path in out. */
static bool path_lookup(const char *name, char *out, size_t size)
{
  const char *path = getenv("PATH");
  while (path && *path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    char cand[4096];
    snprintf(cand, sizeof cand, "%.*s/%s", (int)n, n ? path : ".", name);
    if (access(cand, X_OK) == 0) {
      snprintf(out, size, "%s", cand);
      return true;
    }
    path += n + (end ? 1 : 0);
  }
  return false;
}

/* Whether name is an executable on PATH. */
static bool on_path(const char *name)
{
  char found[4096];
  return path_lookup(name, found, sizeof found);
}

/* google-pprof --svg PROGRAM PROFILE > PROFILE-without-.heap.svg; prints
 * the SVG's path, or why there is none.  A profile with nothing live (a
 * program that freed all before it exited) has no in-use graph, on
 * which google-pprof fails ("No nodes to print"): its graph is then of
 * the space allocated (--alloc_space), and says so. */
static void make_svg(const char *program, const char *profile)
{
  char svg[4200];
  size_t n = strlen(profile);
  if (n > 5 && strcmp(profile + n - 5, ".heap") == 0)
    n -= 5;
  if (n > 4000)
    return;
  snprintf(svg, sizeof svg, "%.*s.svg", (int)n, profile);
  bool alloc_space = nothing_live(profile);
  pid_t pid = fork();
  if (pid < 0) {
    perror("hakmemctl: fork");
    return;
  }
  if (pid == 0) {
    int fd = open(svg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_WRONLY);
    if (fd < 0 || null < 0 || dup2(fd, 1) < 0 || dup2(null, 2) < 0)
      _exit(126);
    unsetenv("LD_PRELOAD");
    if (alloc_space)
      execlp("google-pprof", "google-pprof", "--svg", "--alloc_space", program, profile, (char *)NULL);
    else
      execlp("google-pprof", "google-pprof", "--svg", program, profile, (char *)NULL);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    fprintf(stderr, "hakmemctl: graph: %s%s\n", svg,
            alloc_space ? " (of the space allocated: nothing was live at exit)" : "");
    return;
  }
  unlink(svg);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    fprintf(stderr, "hakmemctl: no SVG: google-pprof not found (Debian package google-perftools)\n");
  else if (!on_path("dot"))
    fprintf(stderr, "hakmemctl: no SVG: google-pprof --svg failed (it needs graphviz's dot)\n");
  else
    fprintf(stderr, "hakmemctl: no SVG: google-pprof --svg %s%s %s failed\n",
            alloc_space ? "--alloc_space " : "", program, profile);
}

/* The path execvp would run for name, or name itself. */
static void resolve_program(const char *name, char *out, size_t size)
{
  snprintf(out, size, "%s", name);
  if (!strchr(name, '/'))
    path_lookup(name, out, size);
}

static int profile_run(int argc, char **argv, const char *prefix, const char *sample_kb,
                       const char *interval_mb, bool leak, bool svg)
{
  if (argc < 1) {
    profile_usage(stderr);
    return 2;
  }
  const char *lib = getenv("HAKMEMCTL_LIBRARY");
  if (!lib || !*lib)
    lib = HAKMEM_LIBDIR "/" HAKMEM_SONAME;
  if (access(lib, R_OK) != 0) {
    fprintf(stderr, "hakmemctl: %s: %s (set HAKMEMCTL_LIBRARY to the library's path)\n", lib,
            strerror(errno));
    return 127;
  }
  char program[4096], default_prefix[4096];
  resolve_program(argv[0], program, sizeof program);
  if (!prefix) {
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    snprintf(default_prefix, sizeof default_prefix, "./hakmem.%s", base);
    prefix = default_prefix;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("hakmemctl: fork");
    return 126;
  }
  if (pid == 0) {
    const char *old = getenv("LD_PRELOAD");
    char preload[4096];
    snprintf(preload, sizeof preload, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
    setenv("LD_PRELOAD", preload, 1);
    setenv("HAKMEM_PROF", "1", 1);
    setenv("HAKMEM_PROF_PREFIX", prefix, 1);
    if (sample_kb)
      setenv("HAKMEM_PROF_SAMPLE_KB", sample_kb, 1);
    if (interval_mb)
      setenv("HAKMEM_PROF_INTERVAL_MB", interval_mb, 1);
    if (leak)
      setenv("HAKMEM_PROF_LEAK", "1", 1);
    execvp(argv[0], argv);
    fprintf(stderr, "hakmemctl: %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  char profile[4200];
  if (snprintf(profile, sizeof profile, "%.4000s.%d.exit.heap", prefix, (int)pid) >= (int)sizeof profile)
    return rc ? rc : 1;
  if (access(profile, R_OK) != 0) {
    fprintf(stderr, "hakmemctl: no profile %s: the program %s before hakmem's exit handlers ran\n",
            profile, WIFSIGNALED(status) ? "was killed" : "did not exit through exit(3), or ended");
    return rc ? rc : 1;
  }
  fprintf(stderr, "hakmemctl: profile: %s\n", profile);
  if (svg)
    make_svg(program, profile);
  return rc;
}

/* ---- --pid ---- */

/* Finds libhakmem in /proc/PID/maps: the start of its mapping at file
 * offset 0, and its path.  False if the process does not have it. */
static bool find_library(pid_t pid, unsigned long *base, char *path, size_t size)
{
  char name[64];
  snprintf(name, sizeof name, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(name, "re");
  if (!f) {
    fprintf(stderr, "hakmemctl: %s: %s\n", name, strerror(errno));
    return false;
  }
  char line[4608];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    unsigned long lo, off;
    int pos = 0;
    if (sscanf(line, "%lx-%*x %*s %lx %*s %*s %n", &lo, &off, &pos) < 2 || pos == 0)
      continue;
    char *p = line + pos;
    p[strcspn(p, "\n")] = 0;
    const char *slash = strrchr(p, '/');
    if (off == 0 && slash && live_is_library_name(slash + 1)) {
      *base = lo;
      snprintf(path, size, "%s", p);
      found = true;
    }
  }
  fclose(f);
  return found;
}

/* The address of symbol in the ELF file path loaded at base (its first
 * PT_LOAD at file offset 0 mapped there); 0 if not found. */
static unsigned long elf_symbol(const char *path, unsigned long base, const char *symbol)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  struct stat st;
  unsigned long addr = 0;
  char *img = NULL;
  if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr) || !(img = malloc((size_t)st.st_size)) ||
      pread(fd, img, (size_t)st.st_size, 0) != st.st_size)
    goto out;
  size_t len = (size_t)st.st_size;
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > len ||
      eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > len)
    goto out;
  unsigned long first_vaddr = 0;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD) {
      first_vaddr = ph[i].p_vaddr & ~(ph[i].p_align ? ph[i].p_align - 1 : 0);
      break;
    }
  const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff);
  for (unsigned i = 0; i < eh->e_shnum && !addr; i++) {
    if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum)
      continue;
    const Elf64_Shdr *strs = &sh[sh[i].sh_link];
    if (sh[i].sh_offset + sh[i].sh_size > len || strs->sh_offset + strs->sh_size > len)
      goto out;
    const Elf64_Sym *sym = (const Elf64_Sym *)(img + sh[i].sh_offset);
    size_t count = sh[i].sh_size / sizeof *sym;
    for (size_t k = 0; k < count; k++) {
      if (sym[k].st_name >= strs->sh_size || sym[k].st_shndx == SHN_UNDEF)
        continue;
      const char *nm = img + strs->sh_offset + sym[k].st_name;
      if (strnlen(nm, strs->sh_size - sym[k].st_name) < strs->sh_size - sym[k].st_name &&
          strcmp(nm, symbol) == 0) {
        addr = base + sym[k].st_value - first_vaddr;
        break;
      }
    }
  }
out:
  free(img);
  close(fd);
  return addr;
}

static int vm_access(pid_t pid, unsigned long addr, void *buf, size_t n, bool write)
{
  struct iovec local = { buf, n }, remote = { (void *)addr, n };
  ssize_t r = write ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
                    : process_vm_readv(pid, &local, 1, &remote, 1, 0);
  return r == (ssize_t)n ? 0 : (r < 0 ? errno : EIO);
}

static int vm_error(pid_t pid, int err)
{
  if (err == EPERM || err == EACCES)
    fprintf(stderr, "hakmemctl: %d: permission denied: reading or writing another process's memory "
                    "needs the permission of ptrace(2) (the same user and kernel.yama.ptrace_scope "
                    "allowing it, or root)\n", (int)pid);
  else if (err == ESRCH)
    fprintf(stderr, "hakmemctl: %d: no such process\n", (int)pid);
  else
    fprintf(stderr, "hakmemctl: %d: process_vm_readv/writev: %s\n", (int)pid, strerror(err));
  return 1;
}

static int profile_pid(const char *pid_text, double timeout, bool svg)
{
  char *end;
  long v = strtol(pid_text, &end, 10);
  if (*pid_text == 0 || *end || v <= 0 || v > 0x7fffffff) {
    fprintf(stderr, "hakmemctl: --pid %s: not a process id\n", pid_text);
    return 2;
  }
  pid_t pid = (pid_t)v;
  char lib[4096], rooted[4200];
  unsigned long base;
  if (kill(pid, 0) != 0 && errno == ESRCH)
    return vm_error(pid, ESRCH);
  if (!find_library(pid, &base, lib, sizeof lib)) {
    fprintf(stderr, "hakmemctl: %d: libhakmem is not loaded in this process\n", (int)pid);
    return 1;
  }
  /* The file as the process sees it (it may live in another mount
   * namespace), else as we do. */
  snprintf(rooted, sizeof rooted, "/proc/%d/root%s", (int)pid, lib);
  unsigned long addr = elf_symbol(rooted, base, "hakmem_prof_control");
  if (!addr)
    addr = elf_symbol(lib, base, "hakmem_prof_control");
  if (!addr) {
    fprintf(stderr, "hakmemctl: %d: %s has no hakmem_prof_control (a libhakmem without the heap "
                    "profiler?)\n", (int)pid, lib);
    return 1;
  }
  struct hakmem_prof_control ctl;
  int err = vm_access(pid, addr, &ctl, sizeof ctl, false);
  if (err)
    return vm_error(pid, err);
  if (strncmp(ctl.magic, PROF_CONTROL_MAGIC, sizeof ctl.magic) != 0) {
    fprintf(stderr, "hakmemctl: %d: unknown profiler control block version '%.15s'\n", (int)pid,
            ctl.magic);
    return 1;
  }
  if (!ctl.active) {
    fprintf(stderr, "hakmemctl: %d: heap profiling is off in this process: start it with "
                    "HAKMEM_PROF=1, or prof = 1 in its section of hakmem.conf\n", (int)pid);
    return 1;
  }
  uint64_t want = ctl.requests + 1;
  err = vm_access(pid, addr + offsetof(struct hakmem_prof_control, requests), &want, sizeof want, true);
  if (err)
    return vm_error(pid, err);
  struct timespec start, now, nap = { 0, 20 * 1000 * 1000 };
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    err = vm_access(pid, addr, &ctl, sizeof ctl, false);
    if (err)
      return vm_error(pid, err);
    if (ctl.answered >= want)
      break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > timeout) {
      fprintf(stderr, "hakmemctl: %d: no profile after %g s: the process writes it at its next "
                      "sample, once it has allocated about %llu KiB more (the request stays "
                      "pending)\n", (int)pid, timeout,
              (unsigned long long)(ctl.sample_bytes >> 10));
      return 1;
    }
    nanosleep(&nap, NULL);
  }
  ctl.last_path[sizeof ctl.last_path - 1] = 0;
  if (ctl.last_error) {
    fprintf(stderr, "hakmemctl: %d: the process could not write its profile: %s\n", (int)pid,
            strerror(ctl.last_error));
    return 1;
  }
  printf("%s\n", ctl.last_path);
  fflush(stdout);
  if (svg) {
    char exe[64], program[4096];
    snprintf(exe, sizeof exe, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(exe, program, sizeof program - 1);
    if (n > 0) {
      program[n] = 0;
      make_svg(program, ctl.last_path);
    }
  }
  return 0;
}

int hakmemctl_profile(int argc, char **argv)
{
  const char *prefix = NULL, *sample_kb = NULL, *interval_mb = NULL, *pid = NULL;
  bool leak = false, svg = true;
  double timeout = 10;
  int i;
  for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) {
      pid = argv[++i];
    } else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc) {
      prefix = argv[++i];
    } else if (strcmp(argv[i], "--sample-kb") == 0 && i + 1 < argc) {
      sample_kb = argv[++i];
    } else if (strcmp(argv[i], "--interval-mb") == 0 && i + 1 < argc) {
      interval_mb = argv[++i];
    } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      timeout = atof(argv[++i]);
    } else if (strcmp(argv[i], "--leak") == 0) {
      leak = true;
    } else if (strcmp(argv[i], "--no-svg") == 0) {
      svg = false;
    } else if (strcmp(argv[i], "--help") == 0) {
      profile_usage(stdout);
      return 0;
    } else {
      profile_usage(stderr);
      return 2;
    }
  }
  if (pid) {
    if (i < argc) {
      profile_usage(stderr);
      return 2;
    }
    return profile_pid(pid, timeout, svg);
  }
  if (i >= argc) {
    profile_usage(stderr);
    return 2;
  }
  return profile_run(argc - i - 1, argv + i + 1, prefix, sample_kb, interval_mb, leak, svg);
}
