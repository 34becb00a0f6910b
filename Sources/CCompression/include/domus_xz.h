#ifndef DOMUS_XZ_H
#define DOMUS_XZ_H
/*
 * Domus's one-shot .xz decoder: the whole compressed stream in memory, the whole
 * output in one buffer that is also the LZMA dictionary. It decodes what Linux's
 * kernels use (LZMA2, optionally after the x86 BCJ filter; check none, CRC32 or
 * CRC64) and says DOMUS_XZ_UNSUPPORTED for anything else, so the caller can fall
 * back to liblzma. Every length, distance and size comes from the input and is
 * checked before use; no read or write leaves the buffers given.
 */
#include <stddef.h>
#include <stdint.h>

enum domus_xz_status {
    DOMUS_XZ_OK = 0,
    /* The input ends inside the stream. */
    DOMUS_XZ_TRUNCATED = 1,
    /* The stream is malformed or its check does not match; `message` says how. */
    DOMUS_XZ_CORRUPT = 2,
    /* Valid .xz this decoder does not handle (another filter or check). */
    DOMUS_XZ_UNSUPPORTED = 3,
    /* The output would be larger than the limit given. */
    DOMUS_XZ_TOO_LARGE = 4,
    /* `output_capacity` is smaller than the stream's decoded size. */
    DOMUS_XZ_OUTPUT_TOO_SMALL = 5,
};

struct domus_xz_result {
    /* Bytes of output: the decoded size (measure) or the bytes written (decode). */
    size_t output_size;
    /* Bytes of input the first stream took, stream header to footer. */
    size_t input_used;
    /* Static text for DOMUS_XZ_CORRUPT and DOMUS_XZ_UNSUPPORTED; NULL otherwise. */
    const char *message;
};

/*
 * Walks the first stream's headers, LZMA2 chunk headers, index and footer without
 * decoding, and gives the decoded size. Sizes past `limit` stop the walk with
 * DOMUS_XZ_TOO_LARGE. Checks that need the decoded data are left to decode.
 */
enum domus_xz_status domus_xz_measure(const uint8_t *input, size_t input_size, size_t limit,
                                      struct domus_xz_result *result);

/*
 * Decodes the first stream into `output` (capacity `output_capacity`, at least what
 * domus_xz_measure gave), verifying every header CRC, the blocks' checks and the
 * index. Anything after the stream is ignored.
 */
enum domus_xz_status domus_xz_decode(const uint8_t *input, size_t input_size, uint8_t *output,
                                     size_t output_capacity, struct domus_xz_result *result);

#endif
