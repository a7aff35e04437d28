// eventfd shims (see CLinuxNet.h): Glibc's Swift module does not export <sys/eventfd.h>.
#ifndef CLINUXNET_EVENT_SHIM_H
#define CLINUXNET_EVENT_SHIM_H

/// A non-blocking, close-on-exec eventfd with count 0. The corresponding C function is `eventfd`.
int CLinuxNet_eventfd_nonblocking(void);

#endif
