/* Links the C99 and C++ header objects against the library and checks the
 * ABI version and the init functions. */
#include <stdio.h>
#include <string.h>

#include "goconn.h"

int goconn_header_c99_ok(void);
int goconn_header_cxx_ok(void);

int main(void) {
    if (goconn_abi_version() != GOCONN_ABI_VERSION) {
        fprintf(stderr, "ABI %d, header %d\n", goconn_abi_version(), GOCONN_ABI_VERSION);
        return 1;
    }
    if (goconn_header_c99_ok() != GOCONN_PROTOCOL_VERSION) return 1;
    if (goconn_header_cxx_ok() != GOCONN_PROTOCOL_VERSION + GOCONN_OPTIONS_VERSION) return 1;
    if (strcmp(goconn_version(), "0.1.0") != 0) return 1;
    goconn_options o;
    if (goconn_options_init(&o, 0) != GOCONN_EVERSION) return 1;
    if (goconn_options_init(&o, GOCONN_OPTIONS_VERSION + 1) != GOCONN_EVERSION) return 1;
    if (goconn_options_init(NULL, GOCONN_OPTIONS_VERSION) != -22) return 1;
    printf("header ok: goconn %s, ABI %d\n", goconn_version(), goconn_abi_version());
    return 0;
}
