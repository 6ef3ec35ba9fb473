/* An I/O fault for the reliability suite, injected at the libc boundary (LD_PRELOAD), as
 * libfaketime injects time: while the file named by $IOFAULT_CONTROL exists and holds an errno
 * (30 EROFS, 28 ENOSPC), every write, pwrite, fsync, fdatasync and ftruncate on a file whose path
 * starts with $IOFAULT_PREFIX fails with it; other files (logs, the file sinks) are untouched.
 * Deleting the control file heals the "disk". Linux refuses to remount a filesystem read-only
 * while a file on it is open for writing, so this is how a database that turns read-only under
 * a running daemon is tested. Built by tests/reliability/conftest.py with the system's cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int fault_for(int fd) {
    const char *control = getenv("IOFAULT_CONTROL");
    const char *prefix = getenv("IOFAULT_PREFIX");
    if (control == NULL || prefix == NULL) return 0;
    FILE *f = fopen(control, "r");
    if (f == NULL) return 0;
    int code = 0;
    if (fscanf(f, "%d", &code) != 1) code = 0;
    fclose(f);
    if (code <= 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = '\0';
    return strncmp(path, prefix, strlen(prefix)) == 0 ? code : 0;
}

#define WRAP(ret, name, params, args)                                   \
    ret name params {                                                   \
        static ret(*real) params;                                       \
        if (real == NULL) real = (ret(*) params)dlsym(RTLD_NEXT, #name); \
        int code = fault_for(fd);                                       \
        if (code) { errno = code; return -1; }                          \
        return real args;                                               \
    }

WRAP(ssize_t, write, (int fd, const void *buf, size_t count), (fd, buf, count))
WRAP(ssize_t, pwrite, (int fd, const void *buf, size_t count, off_t offset), (fd, buf, count, offset))
WRAP(ssize_t, pwrite64, (int fd, const void *buf, size_t count, off64_t offset), (fd, buf, count, offset))
WRAP(int, fsync, (int fd), (fd))
WRAP(int, fdatasync, (int fd), (fd))
WRAP(int, ftruncate, (int fd, off_t length), (fd, length))
