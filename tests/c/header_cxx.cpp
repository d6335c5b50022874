// The public header compiles as C++11 with every warning an error.
#include "goconn.h"

extern "C" int goconn_header_cxx_ok(void);

extern "C" int goconn_header_cxx_ok(void) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    goconn_options o;
    if (goconn_options_init(&o, GOCONN_OPTIONS_VERSION) != 0) return -1;
    return static_cast<int>(p.version) + static_cast<int>(o.version);
}
