// liburing.h defines _GNU_SOURCE and _XOPEN_SOURCE before including the C library headers, which
// changes their declarations (fd_set's field is then `fds_bits`, not `__fds_bits`) so that they
// clash with Swift's Glibc module. Including the C library headers first, without those macros,
// makes both modules see the same declarations.
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <liburing.h>
