/* HTTP response heads and bodies (src/http): what a backend answers to the
 * upgrade the gateway forwards, relayed to the client when it is not a
 * 101. Bodies come chunked, with a Content-Length, or until the backend
 * closes. See fuzz_http.h for how each input is read. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http(HTTP_RESPONSE, data, size);
    return 0;
}
