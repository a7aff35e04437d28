#include "event_shim.h"
#include <sys/eventfd.h>

int CLinuxNet_eventfd_nonblocking(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}
