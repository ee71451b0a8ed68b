/* HTTP request heads and bodies (src/http): what clients send to WS_PORT
 * and what backends and operators send to the HTTP port. See fuzz_http.h
 * for how each input is read. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http(HTTP_REQUEST, data, size);
    return 0;
}
