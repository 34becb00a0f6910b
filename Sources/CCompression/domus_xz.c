/*
 * Domus's one-shot .xz decoder (see include/domus_xz.h).
 *
 * Why our own: a kernel's payload is one LZMA2 block of ~30 MiB, decoded on every
 * cold boot. With the whole stream and the whole output in memory, the output buffer
 * is the dictionary, so there is no circular window, no resumable state machine and
 * no copy out; the range decoder lives in registers for a whole chunk. In the
 * emulated AMD-V box this decodes Debian's kernel in ~60 % of liblzma's time.
 *
 * Formats, from their public specifications: the .xz file format (Tukaani, 1.1.0),
 * LZMA2 chunks, the LZMA range coder and models (Igor Pavlov's lzma-specification),
 * and the x86 BCJ filter. liblzma remains the reference: the unit tests decode
 * liblzma's output of random data with every option this decoder takes.
 */
#include "domus_xz.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

typedef uint16_t prob_t;

#define LZMA_STATES 12
#define LZMA_POS_STATES_MAX 16
#define LZMA_LITERAL_CODER_SIZE 0x300
#define LZMA_LCLP_MAX 4
#define PROB_INIT 1024u       /* half of 1 << 11: probability one half */
#define TOP_VALUE (1u << 24)  /* normalize when the range falls below this */

struct len_probs {
    prob_t choice;
    prob_t choice2;
    prob_t low[LZMA_POS_STATES_MAX][8];
    prob_t mid[LZMA_POS_STATES_MAX][8];
    prob_t high[256];
};

/* The LZMA model and state that survive from one LZMA2 chunk to the next. */
struct lzma_model {
    uint32_t state;
    uint32_t rep0, rep1, rep2, rep3;
    uint32_t lc, lp, pb;
    prob_t is_match[LZMA_STATES][LZMA_POS_STATES_MAX];
    prob_t is_rep[LZMA_STATES];
    prob_t is_rep_g0[LZMA_STATES];
    prob_t is_rep_g1[LZMA_STATES];
    prob_t is_rep_g2[LZMA_STATES];
    prob_t is_rep0_long[LZMA_STATES][LZMA_POS_STATES_MAX];
    prob_t dist_slot[4][64];
    prob_t dist_special[115]; /* slots 4..13, indexed from 1 as reverse bit trees */
    prob_t dist_align[16];
    struct len_probs match_len;
    struct len_probs rep_len;
    prob_t literal[LZMA_LITERAL_CODER_SIZE << LZMA_LCLP_MAX];
};

static void model_reset_state(struct lzma_model *m) {
    m->state = 0;
    m->rep0 = m->rep1 = m->rep2 = m->rep3 = 0;
    /* Every field from is_match on is a prob_t: set them all to one half. */
    prob_t *first = &m->is_match[0][0];
    prob_t *end = (prob_t *)((uint8_t *)m + sizeof(*m));
    for (prob_t *p = first; p < end; p++) *p = PROB_INIT;
}

/* ---- The range decoder: one per LZMA chunk, kept in locals by inlining. ---- */

struct range_decoder {
    uint32_t range;
    uint32_t code;
    const uint8_t *next;
    const uint8_t *end;
    int overrun; /* a byte past the chunk was wanted: the chunk is corrupt */
};

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void rc_normalize(struct range_decoder *rc) {
    if (rc->range < TOP_VALUE) {
        rc->range <<= 8;
        uint32_t byte = 0;
        if (rc->next < rc->end)
            byte = *rc->next++;
        else
            rc->overrun = 1;
        rc->code = (rc->code << 8) | byte;
    }
}

/* One adaptive bit: 0 or 1, and the probability moves toward what was seen. */
ALWAYS_INLINE uint32_t rc_bit(struct range_decoder *rc, prob_t *p) {
    uint32_t probability = *p;
    rc_normalize(rc);
    uint32_t bound = (rc->range >> 11) * probability;
    if (rc->code < bound) {
        rc->range = bound;
        *p = (prob_t)(probability + ((2048u - probability) >> 5));
        return 0;
    }
    rc->range -= bound;
    rc->code -= bound;
    *p = (prob_t)(probability - (probability >> 5));
    return 1;
}

/* `bits` bits, most significant first, through a binary tree of probabilities. */
ALWAYS_INLINE uint32_t rc_tree(struct range_decoder *rc, prob_t *probs, uint32_t bits) {
    uint32_t node = 1;
    uint32_t limit = 1u << bits;
    while (node < limit) node = (node << 1) | rc_bit(rc, &probs[node]);
    return node - limit;
}

/* `bits` bits, least significant first, through a tree indexed from 1. */
ALWAYS_INLINE uint32_t rc_reverse_tree(struct range_decoder *rc, prob_t *probs, uint32_t bits) {
    uint32_t node = 1;
    uint32_t value = 0;
    for (uint32_t i = 0; i < bits; i++) {
        uint32_t bit = rc_bit(rc, &probs[node]);
        node = (node << 1) | bit;
        value |= bit << i;
    }
    return value;
}

/* `bits` (>= 1) bits of fixed probability one half. */
ALWAYS_INLINE uint32_t rc_direct(struct range_decoder *rc, uint32_t bits) {
    uint32_t value = 0;
    do {
        rc_normalize(rc);
        rc->range >>= 1;
        rc->code -= rc->range;
        uint32_t mask = 0u - (rc->code >> 31); /* all ones when the bit is 0 */
        rc->code += rc->range & mask;
        value = (value << 1) + (mask + 1);
    } while (--bits);
    return value;
}

/* A match length minus 2: 0..271. */
ALWAYS_INLINE uint32_t rc_length(struct range_decoder *rc, struct len_probs *probs, uint32_t pos_state) {
    if (!rc_bit(rc, &probs->choice)) return rc_tree(rc, probs->low[pos_state], 3);
    if (!rc_bit(rc, &probs->choice2)) return 8 + rc_tree(rc, probs->mid[pos_state], 3);
    return 16 + rc_tree(rc, probs->high, 8);
}

/*
 * Decodes one LZMA chunk of `input_size` bytes into out[pos, end). The bytes from
 * `dict_start` on are the dictionary (earlier ones belong to a dictionary since
 * reset); distances may reach back at most `dict_size` bytes.
 */
static const char *lzma_chunk(struct lzma_model *m, const uint8_t *input, size_t input_size, uint8_t *out,
                              size_t pos, size_t end, size_t dict_start, size_t dict_size) {
    if (input_size < 5 || input[0] != 0) return "LZMA chunk starts without a range coder header";
    struct range_decoder rc = {
        .range = 0xFFFFFFFFu,
        .code = ((uint32_t)input[1] << 24) | ((uint32_t)input[2] << 16) | ((uint32_t)input[3] << 8) | input[4],
        .next = input + 5,
        .end = input + input_size,
        .overrun = 0,
    };
    uint32_t state = m->state;
    uint32_t rep0 = m->rep0, rep1 = m->rep1, rep2 = m->rep2, rep3 = m->rep3;
    const uint32_t pb_mask = (1u << m->pb) - 1;
    const uint32_t lp_mask = (1u << m->lp) - 1;
    const uint32_t lc = m->lc;
    const char *error = NULL;

    while (pos < end) {
        size_t filled = pos - dict_start; /* dictionary bytes so far */
        uint32_t pos_state = (uint32_t)filled & pb_mask;

        if (!rc_bit(&rc, &m->is_match[state][pos_state])) {
            uint32_t previous = filled ? out[pos - 1] : 0;
            prob_t *probs = m->literal +
                            LZMA_LITERAL_CODER_SIZE * ((((uint32_t)filled & lp_mask) << lc) + (previous >> (8 - lc)));
            uint32_t symbol = 1;
            if (state >= 7) {
                /* After a match: bits follow the byte at rep0 until one differs. */
                uint32_t match_byte = out[pos - rep0 - 1];
                while (symbol < 0x100) {
                    uint32_t match_bit = (match_byte >> 7) & 1;
                    match_byte <<= 1;
                    uint32_t bit = rc_bit(&rc, &probs[0x100 + (match_bit << 8) + symbol]);
                    symbol = (symbol << 1) | bit;
                    if (bit != match_bit) break;
                }
            }
            while (symbol < 0x100) symbol = (symbol << 1) | rc_bit(&rc, &probs[symbol]);
            out[pos++] = (uint8_t)symbol;
            state = state < 4 ? 0 : (state < 10 ? state - 3 : state - 6);
            continue;
        }

        uint32_t length;
        if (rc_bit(&rc, &m->is_rep[state])) {
            if (!rc_bit(&rc, &m->is_rep_g0[state])) {
                if (!rc_bit(&rc, &m->is_rep0_long[state][pos_state])) {
                    /* Short rep: one byte from rep0. */
                    if (rep0 >= filled || rep0 >= dict_size) {
                        error = "LZMA repeats a byte from before the dictionary";
                        break;
                    }
                    state = state < 7 ? 9 : 11;
                    out[pos] = out[pos - rep0 - 1];
                    pos++;
                    continue;
                }
            } else {
                uint32_t distance;
                if (!rc_bit(&rc, &m->is_rep_g1[state])) {
                    distance = rep1;
                } else {
                    if (!rc_bit(&rc, &m->is_rep_g2[state])) {
                        distance = rep2;
                    } else {
                        distance = rep3;
                        rep3 = rep2;
                    }
                    rep2 = rep1;
                }
                rep1 = rep0;
                rep0 = distance;
            }
            length = rc_length(&rc, &m->rep_len, pos_state);
            state = state < 7 ? 8 : 11;
        } else {
            rep3 = rep2;
            rep2 = rep1;
            rep1 = rep0;
            length = rc_length(&rc, &m->match_len, pos_state);
            state = state < 7 ? 7 : 10;
            uint32_t slot = rc_tree(&rc, m->dist_slot[length < 3 ? length : 3], 6);
            uint32_t distance = slot;
            if (slot >= 4) {
                uint32_t bits = (slot >> 1) - 1;
                distance = (2 | (slot & 1)) << bits;
                if (slot < 14) {
                    distance += rc_reverse_tree(&rc, m->dist_special + distance - slot, bits);
                } else {
                    distance += rc_direct(&rc, bits - 4) << 4;
                    distance += rc_reverse_tree(&rc, m->dist_align, 4);
                }
            }
            if (distance == 0xFFFFFFFFu) {
                error = "LZMA end marker inside an LZMA2 chunk";
                break;
            }
            rep0 = distance;
        }

        length += 2;
        if (rep0 >= filled || rep0 >= dict_size) {
            error = "LZMA match reaches before the dictionary";
            break;
        }
        if (length > end - pos) {
            error = "LZMA match runs past the end of its chunk";
            break;
        }
        const uint8_t *from = out + pos - rep0 - 1;
        uint8_t *to = out + pos;
        for (uint32_t i = 0; i < length; i++) to[i] = from[i];
        pos += length;
    }
    rc_normalize(&rc);

    m->state = state;
    m->rep0 = rep0;
    m->rep1 = rep1;
    m->rep2 = rep2;
    m->rep3 = rep3;
    if (error) return error;
    if (rc.overrun) return "LZMA chunk needs more input than its size";
    if (rc.next != rc.end || rc.code != 0) return "LZMA chunk does not end where its size says";
    return NULL;
}

/* ---- The x86 BCJ filter, decoding direction, over a whole block at once. ---- */

/*
 * x86 code stores call/jump targets (E8/E9 rel32) as absolute addresses after the
 * filter, which compresses better; this turns them back into relative ones. The
 * mask remembers E8/E9 bytes seen in the last five positions, which decide whether
 * an opcode byte is likely real; the rules must match the encoder exactly.
 */
static void x86_bcj_decode(uint8_t *buf, size_t size, uint32_t start) {
    /* Whether a conversion is allowed, by bits 1..3 of the mask. */
    static const uint8_t allowed[8] = {1, 1, 1, 0, 1, 0, 0, 0};
    /*
     * Which operand byte is suspect, by bits 1..3 of the mask (the E8/E9 bytes 1, 2
     * and 3 positions back): 1 is byte 2, 2 is byte 1, 4 is byte 0 (as 24 - 8 * n).
     */
    static const uint8_t suspect_byte[8] = {0, 1, 2, 2, 3, 3, 3, 3};
    if (size < 5) return;
    uint32_t mask = 0;
    uint32_t last_opcode = start - 5; /* position of the last E8/E9, mod 2^32 */
    size_t i = 0;
    while (i <= size - 5) {
        uint8_t opcode = buf[i];
        if (opcode != 0xE8 && opcode != 0xE9) {
            i++;
            continue;
        }
        uint32_t here = start + (uint32_t)i;
        uint32_t gap = here - last_opcode;
        last_opcode = here;
        if (gap > 5) {
            mask = 0;
        } else {
            for (uint32_t k = 0; k < gap; k++) mask = (mask & 0x77) << 1;
        }
        uint8_t top = buf[i + 4];
        int top_is_sign = top == 0x00 || top == 0xFF;
        if (top_is_sign && allowed[(mask >> 1) & 7] && (mask >> 1) < 0x10) {
            uint32_t value = (uint32_t)buf[i + 1] | ((uint32_t)buf[i + 2] << 8) | ((uint32_t)buf[i + 3] << 16) |
                             ((uint32_t)top << 24);
            uint32_t target = value - (here + 5);
            if (mask != 0) {
                /*
                 * One earlier E8/E9, `n` bytes back (n = 1..3), failed; its would-be top
                 * byte is this operand's byte 3 - n, which is therefore not 00/FF. If the
                 * subtraction made that byte 00/FF, the encoder had complemented the bits
                 * up to it; undo that and subtract again. The format's reference loops
                 * "while the byte is 00/FF", but it cannot go round twice: modulo the
                 * low bits, (~(v - k)) - k = ~v, whose byte is the complement of one
                 * that is not 00/FF. So one correction is the whole loop, bounded.
                 */
                uint32_t shift = 24 - 8u * suspect_byte[(mask >> 1) & 7];
                uint8_t suspect = (uint8_t)(target >> shift);
                if (suspect == 0x00 || suspect == 0xFF)
                    target = (target ^ (uint32_t)((1ull << (shift + 8)) - 1)) - (here + 5);
            }
            buf[i + 1] = (uint8_t)target;
            buf[i + 2] = (uint8_t)(target >> 8);
            buf[i + 3] = (uint8_t)(target >> 16);
            buf[i + 4] = (target & (1u << 24)) ? 0xFF : 0x00;
            i += 5;
            mask = 0;
        } else {
            i++;
            mask |= 1;
            if (top_is_sign) mask |= 0x10;
        }
    }
}

/* ---- Checks. ---- */

static uint32_t crc32_of(const uint8_t *data, size_t size) {
    return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), data, size);
}

/* CRC-64/XZ: ECMA-182 polynomial, reflected, initial and final value all ones. */
static uint64_t crc64_table[256];

static void crc64_make_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint64_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xC96C5795D7870F42ull : c >> 1;
        crc64_table[n] = c;
    }
}

static uint64_t crc64_of(const uint8_t *data, size_t size) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc64_make_table);
    const uint64_t *table = crc64_table;
    uint64_t crc = ~0ull;
    for (size_t i = 0; i < size; i++) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* ---- The container. ---- */

struct decoder {
    const uint8_t *in;
    size_t in_size;
    size_t pos;
    uint8_t *out; /* NULL: measure only */
    size_t out_limit;
    enum domus_xz_status limit_status;
    size_t out_pos;
    struct lzma_model *model;
    const char *message;
};

#define FAIL(d, status, text) \
    do {                      \
        (d)->message = (text); \
        return (status);      \
    } while (0)

/* A variable-length integer at in[*at, end): 7 bits a byte, at most 9 bytes. */
static enum domus_xz_status read_vli(struct decoder *d, size_t *at, size_t end, uint64_t *value) {
    uint64_t result = 0;
    for (uint32_t i = 0; i < 9; i++) {
        if (*at >= end) {
            if (end < d->in_size) FAIL(d, DOMUS_XZ_CORRUPT, "integer runs past its header");
            FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        }
        uint8_t byte = d->in[(*at)++];
        result |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (!(byte & 0x80)) {
            if (byte == 0 && i > 0) FAIL(d, DOMUS_XZ_CORRUPT, "integer has a needless zero byte");
            *value = result;
            return DOMUS_XZ_OK;
        }
    }
    FAIL(d, DOMUS_XZ_CORRUPT, "integer longer than 9 bytes");
}

/* Whether `size` more output bytes fit under the limit (the cap, or the buffer's size). */
static enum domus_xz_status reserve_output(struct decoder *d, size_t size) {
    if (size > d->out_limit - d->out_pos) FAIL(d, d->limit_status, NULL);
    return DOMUS_XZ_OK;
}

/* The LZMA2 chunks of one block, from d->pos to just past the end marker. */
static enum domus_xz_status lzma2_block(struct decoder *d, uint32_t dict_size) {
    int need_dict_reset = 1;
    int need_properties = 1;
    size_t dict_start = d->out_pos;
    enum domus_xz_status status;
    for (;;) {
        if (d->pos >= d->in_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        uint8_t control = d->in[d->pos++];
        if (control == 0x00) return DOMUS_XZ_OK;
        if (control >= 0xE0 || control == 0x01) {
            need_dict_reset = 0;
            need_properties = 1;
            dict_start = d->out_pos;
        } else if (need_dict_reset) {
            FAIL(d, DOMUS_XZ_CORRUPT, "first LZMA2 chunk does not reset the dictionary");
        }

        if (control < 0x80) {
            if (control > 0x02) FAIL(d, DOMUS_XZ_CORRUPT, "invalid LZMA2 control byte");
            if (d->in_size - d->pos < 2) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
            size_t size = (((size_t)d->in[d->pos] << 8) | d->in[d->pos + 1]) + 1;
            d->pos += 2;
            if (d->in_size - d->pos < size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
            if ((status = reserve_output(d, size))) return status;
            if (d->out) memcpy(d->out + d->out_pos, d->in + d->pos, size);
            d->pos += size;
            d->out_pos += size;
            continue;
        }

        uint32_t reset = (control >> 5) & 3; /* 0 none, 1 state, 2 + properties, 3 + dictionary */
        size_t header = reset >= 2 ? 5 : 4;
        if (d->in_size - d->pos < header) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        size_t unpacked = ((((size_t)control & 0x1F) << 16) | ((size_t)d->in[d->pos] << 8) | d->in[d->pos + 1]) + 1;
        size_t packed = (((size_t)d->in[d->pos + 2] << 8) | d->in[d->pos + 3]) + 1;
        if (reset >= 2) {
            uint32_t props = d->in[d->pos + 4];
            if (props >= 9 * 5 * 5) FAIL(d, DOMUS_XZ_CORRUPT, "invalid LZMA properties byte");
            uint32_t lc = props % 9, lp = (props / 9) % 5, pb = props / 45;
            if (lc + lp > LZMA_LCLP_MAX) FAIL(d, DOMUS_XZ_CORRUPT, "LZMA2 chunk with lc + lp above 4");
            if (d->model) {
                d->model->lc = lc;
                d->model->lp = lp;
                d->model->pb = pb;
            }
            need_properties = 0;
        } else if (need_properties) {
            FAIL(d, DOMUS_XZ_CORRUPT, "LZMA2 chunk needs properties it does not have");
        }
        d->pos += header;
        if (d->in_size - d->pos < packed) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        if ((status = reserve_output(d, unpacked))) return status;
        if (d->out) {
            if (reset >= 1) model_reset_state(d->model);
            const char *error = lzma_chunk(d->model, d->in + d->pos, packed, d->out, d->out_pos,
                                           d->out_pos + unpacked, dict_start, dict_size);
            if (error) FAIL(d, DOMUS_XZ_CORRUPT, error);
        }
        d->pos += packed;
        d->out_pos += unpacked;
    }
}

static const uint8_t stream_magic[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};

/* Bytes of each check type's field (the .xz format's table, by type 0..15). */
static const uint8_t check_sizes[16] = {0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64};

/* Record hashing for the index comparison: counts, sums, and a CRC over the list. */
struct record_list {
    uint64_t count;
    uint64_t unpadded_sum;
    uint64_t uncompressed_sum;
    uint32_t crc;
};

static void record_add(struct record_list *list, uint64_t unpadded, uint64_t uncompressed) {
    uint8_t bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (uint8_t)(unpadded >> (8 * i));
        bytes[8 + i] = (uint8_t)(uncompressed >> (8 * i));
    }
    list->count++;
    list->unpadded_sum += unpadded;
    list->uncompressed_sum += uncompressed;
    list->crc = (uint32_t)crc32_z(list->crc, bytes, sizeof(bytes));
}

static enum domus_xz_status block(struct decoder *d, uint32_t check, struct record_list *records) {
    enum domus_xz_status status;
    size_t header_size = ((size_t)d->in[d->pos] + 1) * 4;
    if (d->in_size - d->pos < header_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
    const uint8_t *header = d->in + d->pos;
    if (crc32_of(header, header_size - 4) != le32(header + header_size - 4))
        FAIL(d, DOMUS_XZ_CORRUPT, "block header CRC32 does not match");
    uint8_t flags = header[1];
    if (flags & 0x3C) FAIL(d, DOMUS_XZ_UNSUPPORTED, "block header uses reserved flags");
    size_t at = d->pos + 2, end = d->pos + header_size - 4;
    uint64_t declared_compressed = 0, declared_uncompressed = 0;
    if ((flags & 0x40) && (status = read_vli(d, &at, end, &declared_compressed))) return status;
    if ((flags & 0x80) && (status = read_vli(d, &at, end, &declared_uncompressed))) return status;
    if ((flags & 0x40) && declared_compressed == 0) FAIL(d, DOMUS_XZ_CORRUPT, "block declares no compressed data");

    uint32_t filters = (flags & 3) + 1;
    int x86 = 0;
    uint32_t x86_start = 0;
    uint32_t dict_size = 0;
    for (uint32_t i = 0; i < filters; i++) {
        uint64_t id = 0, props_size = 0;
        if ((status = read_vli(d, &at, end, &id))) return status;
        if ((status = read_vli(d, &at, end, &props_size))) return status;
        if (props_size > end - at) FAIL(d, DOMUS_XZ_CORRUPT, "filter properties run past the block header");
        const uint8_t *props = d->in + at;
        at += props_size;
        int last = i == filters - 1;
        if (last && id == 0x21 && props_size == 1) {
            uint8_t bits = props[0];
            if (bits > 40) FAIL(d, DOMUS_XZ_UNSUPPORTED, "LZMA2 dictionary size byte above 40");
            dict_size = bits == 40 ? 0xFFFFFFFFu : (2u | (bits & 1)) << (bits / 2 + 11);
        } else if (!last && i == 0 && id == 0x04 && (props_size == 0 || props_size == 4)) {
            x86 = 1;
            x86_start = props_size == 4 ? le32(props) : 0;
        } else {
            FAIL(d, DOMUS_XZ_UNSUPPORTED, "filter chain other than LZMA2, or x86 BCJ then LZMA2");
        }
    }
    for (; at < end; at++)
        if (d->in[at] != 0) FAIL(d, DOMUS_XZ_UNSUPPORTED, "block header padding is not zero");

    d->pos += header_size;
    size_t data_start = d->pos;
    size_t out_start = d->out_pos;
    if ((status = lzma2_block(d, dict_size))) return status;
    size_t compressed = d->pos - data_start;
    size_t uncompressed = d->out_pos - out_start;
    if ((flags & 0x40) && declared_compressed != compressed)
        FAIL(d, DOMUS_XZ_CORRUPT, "block's compressed size differs from its header");
    if ((flags & 0x80) && declared_uncompressed != uncompressed)
        FAIL(d, DOMUS_XZ_CORRUPT, "block's uncompressed size differs from its header");
    if (d->out && x86) x86_bcj_decode(d->out + out_start, uncompressed, x86_start);

    while ((d->pos - data_start) & 3) {
        if (d->pos >= d->in_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        if (d->in[d->pos++] != 0) FAIL(d, DOMUS_XZ_CORRUPT, "block padding is not zero");
    }
    size_t check_size = check_sizes[check];
    if (d->in_size - d->pos < check_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
    if (d->out) {
        const uint8_t *field = d->in + d->pos;
        const uint8_t *data = d->out + out_start;
        if (check == 1 && crc32_of(data, uncompressed) != le32(field))
            FAIL(d, DOMUS_XZ_CORRUPT, "block's CRC32 does not match its data");
        if (check == 4 && crc64_of(data, uncompressed) != le64(field))
            FAIL(d, DOMUS_XZ_CORRUPT, "block's CRC64 does not match its data");
    }
    d->pos += check_size;
    record_add(records, header_size + compressed + check_size, uncompressed);
    return DOMUS_XZ_OK;
}

static enum domus_xz_status index_and_footer(struct decoder *d, const uint8_t *stream_flags,
                                             const struct record_list *blocks) {
    enum domus_xz_status status;
    size_t index_start = d->pos;
    d->pos++; /* the index indicator, 0x00 */
    uint64_t count = 0;
    if ((status = read_vli(d, &d->pos, d->in_size, &count))) return status;
    if (count != blocks->count) FAIL(d, DOMUS_XZ_CORRUPT, "index does not list every block");
    struct record_list listed = {0, 0, 0, 0};
    for (uint64_t i = 0; i < count; i++) {
        uint64_t unpadded = 0, uncompressed = 0;
        if ((status = read_vli(d, &d->pos, d->in_size, &unpadded))) return status;
        if ((status = read_vli(d, &d->pos, d->in_size, &uncompressed))) return status;
        record_add(&listed, unpadded, uncompressed);
    }
    if (listed.unpadded_sum != blocks->unpadded_sum || listed.uncompressed_sum != blocks->uncompressed_sum ||
        listed.crc != blocks->crc)
        FAIL(d, DOMUS_XZ_CORRUPT, "index does not match the blocks");
    while ((d->pos - index_start) & 3) {
        if (d->pos >= d->in_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        if (d->in[d->pos++] != 0) FAIL(d, DOMUS_XZ_CORRUPT, "index padding is not zero");
    }
    if (d->in_size - d->pos < 4) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
    if (crc32_of(d->in + index_start, d->pos - index_start) != le32(d->in + d->pos))
        FAIL(d, DOMUS_XZ_CORRUPT, "index CRC32 does not match");
    d->pos += 4;
    size_t index_size = d->pos - index_start;

    if (d->in_size - d->pos < 12) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
    const uint8_t *footer = d->in + d->pos;
    if (footer[10] != 'Y' || footer[11] != 'Z') FAIL(d, DOMUS_XZ_CORRUPT, "stream footer magic is missing");
    if (crc32_of(footer + 4, 6) != le32(footer)) FAIL(d, DOMUS_XZ_CORRUPT, "stream footer CRC32 does not match");
    if (((uint64_t)le32(footer + 4) + 1) * 4 != index_size)
        FAIL(d, DOMUS_XZ_CORRUPT, "stream footer's index size is wrong");
    if (footer[8] != stream_flags[0] || footer[9] != stream_flags[1])
        FAIL(d, DOMUS_XZ_CORRUPT, "stream footer's flags differ from the header's");
    d->pos += 12;
    return DOMUS_XZ_OK;
}

static enum domus_xz_status run(struct decoder *d, struct domus_xz_result *result) {
    enum domus_xz_status status;
    size_t magic_bytes = d->in_size < 6 ? d->in_size : 6;
    if (magic_bytes && memcmp(d->in, stream_magic, magic_bytes) != 0) FAIL(d, DOMUS_XZ_CORRUPT, "not in .xz format");
    if (d->in_size < 12) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
    const uint8_t *stream_flags = d->in + 6;
    if (crc32_of(stream_flags, 2) != le32(d->in + 8)) FAIL(d, DOMUS_XZ_CORRUPT, "stream header CRC32 does not match");
    if (stream_flags[0] != 0 || (stream_flags[1] & 0xF0))
        FAIL(d, DOMUS_XZ_UNSUPPORTED, "stream header uses reserved flags");
    uint32_t check = stream_flags[1] & 0x0F;
    if (check != 0 && check != 1 && check != 4) FAIL(d, DOMUS_XZ_UNSUPPORTED, "check other than none, CRC32, CRC64");
    d->pos = 12;
    struct record_list blocks = {0, 0, 0, 0};
    for (;;) {
        if (d->pos >= d->in_size) FAIL(d, DOMUS_XZ_TRUNCATED, NULL);
        if (d->in[d->pos] == 0x00) break;
        if ((status = block(d, check, &blocks))) return status;
    }
    if ((status = index_and_footer(d, stream_flags, &blocks))) return status;
    result->output_size = d->out_pos;
    result->input_used = d->pos;
    return DOMUS_XZ_OK;
}

static enum domus_xz_status finish(struct decoder *d, enum domus_xz_status status, struct domus_xz_result *result) {
    if (status != DOMUS_XZ_OK) {
        result->output_size = d->out_pos;
        result->input_used = d->pos;
        result->message = d->message;
    }
    return status;
}

enum domus_xz_status domus_xz_measure(const uint8_t *input, size_t input_size, size_t limit,
                                      struct domus_xz_result *result) {
    struct decoder d = {
        .in = input, .in_size = input_size, .out = NULL, .out_limit = limit, .limit_status = DOMUS_XZ_TOO_LARGE,
    };
    memset(result, 0, sizeof(*result));
    if (!input && input_size) return DOMUS_XZ_CORRUPT;
    return finish(&d, run(&d, result), result);
}

/*
 * A kernel decodes to ~66 MiB of fresh memory; in 4 KiB pages that is ~16 000 page
 * faults, each slow where the host is itself emulated. Ask for transparent huge
 * pages over the buffer's 2 MiB-aligned interior (a hint: harmless if refused).
 */
static void advise_huge_pages(uint8_t *buffer, size_t size) {
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (!buffer || size < 2 * huge) return;
    uintptr_t start = ((uintptr_t)buffer + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)buffer + size) & ~(huge - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
}

/*
 * The page faults on that fresh buffer are on the decoder's path too: ~0.3 s of a
 * ~2 s decode in the emulated box. A second thread takes them ahead of the decoder
 * with MADV_POPULATE_WRITE, which maps the pages without changing their contents, so
 * it cannot disturb bytes the decoder has already written. Where the kernel lacks it
 * (before Linux 5.14) or no thread can be made, the decoder takes the faults itself.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct prefault {
    uint8_t *buffer;
    size_t size;
    /* Set once the decoder is done (or failed): the rest is not needed. */
    int stop;
};

static void *prefault_run(void *argument) {
    const struct prefault *job = argument;
    const uintptr_t page = 4096, step = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)job->buffer + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)job->buffer + job->size) & ~(page - 1);
    while (start < end && !__atomic_load_n(&job->stop, __ATOMIC_RELAXED)) {
        uintptr_t next = (start + step) & ~(step - 1);
        if (next > end) next = end;
        if (madvise((void *)start, next - start, MADV_POPULATE_WRITE) != 0) break;
        start = next;
    }
    return NULL;
}

enum domus_xz_status domus_xz_decode(const uint8_t *input, size_t input_size, uint8_t *output,
                                     size_t output_capacity, struct domus_xz_result *result) {
    memset(result, 0, sizeof(*result));
    if ((!input && input_size) || (!output && output_capacity)) return DOMUS_XZ_CORRUPT;
    struct lzma_model *model = malloc(sizeof(struct lzma_model));
    if (!model) {
        result->message = "out of memory";
        return DOMUS_XZ_UNSUPPORTED;
    }
    model_reset_state(model);
    model->lc = model->lp = model->pb = 0;
    advise_huge_pages(output, output_capacity);
    struct prefault job = {output, output_capacity, 0};
    pthread_t prefaulter;
    int prefaulting = output_capacity >= ((size_t)4 << 20) && pthread_create(&prefaulter, NULL, prefault_run, &job) == 0;
    /* A zero-capacity buffer still needs a non-NULL pointer to mean "decode". */
    static uint8_t empty;
    struct decoder d = {
        .in = input,
        .in_size = input_size,
        .out = output ? output : &empty,
        .out_limit = output_capacity,
        .limit_status = DOMUS_XZ_OUTPUT_TOO_SMALL,
        .model = model,
    };
    enum domus_xz_status status = finish(&d, run(&d, result), result);
    /* The buffer outlives the thread: it ends before the caller gets the buffer back,
     * at once after a stream that failed early (whose declared size may be large). */
    if (prefaulting) {
        __atomic_store_n(&job.stop, 1, __ATOMIC_RELAXED);
        pthread_join(prefaulter, NULL);
    }
    free(model);
    return status;
}
