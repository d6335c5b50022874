#include <stdio.h>

#include <goconn.h>

int main(void) {
    if (goconn_abi_version() != GOCONN_ABI_VERSION) return 1;
    printf("consumer linked goconn %s\n", goconn_version());
    return 0;
}
