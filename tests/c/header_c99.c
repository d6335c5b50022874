/* The public header compiles as strict C99 with every warning an error, and
 * its option structs start with their version. */
#include "goconn.h"

#include <stddef.h>

#define STATIC_ASSERT(cond, name) typedef char static_assert_##name[(cond) ? 1 : -1]

STATIC_ASSERT(offsetof(goconn_options, version) == 0, options_version_first);
STATIC_ASSERT(offsetof(goconn_protocol, version) == 0, protocol_version_first);
STATIC_ASSERT(offsetof(goconn_error, version) == 0, error_version_first);
STATIC_ASSERT(offsetof(goconn_attempt, version) == 0, attempt_version_first);
STATIC_ASSERT(GOCONN_EINTERNAL < -4095, codes_above_errno_range);

int goconn_header_c99_ok(void);
int goconn_header_c99_ok(void) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    return (int)p.version;
}
