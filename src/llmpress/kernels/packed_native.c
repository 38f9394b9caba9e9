/* y = x W^T and row decoding straight from packed palette and uniform codes, never a dense W.
 * Built and loaded by build.py / packed.py.
 *
 * Both formats store one b-bit code per weight in one LSB-first bit stream, row after row
 * (formats/bitpack.py). What a code means differs:
 *   palette  w = lut[r / row_group][code]          lut float16 [groups, 2^b]
 *   uniform  w = (code - zero[r, g]) * scale[r, g]  g = column / col_group (the last group may
 *                                                   be short); scale float16 [rows, groups],
 *                                                   zeros packed at b bits, row-major
 *
 * The fast path (AVX-512, b <= 4 palettes and every uniform width with whole bytes per 16
 * columns) decodes 16 weights in registers: one 64-bit load holds 16 codes, a variable shift
 * spreads them over 16 lanes, and a palette entry is one in-register table look-up
 * (vpermps over the 16 fp32 entries of the row's table: the same idea as the byte-shuffle
 * look-ups of T-MAC, Wei et al. 2024, with the table holding weights instead of activation
 * sums, because a per-row palette has no bit-serial form). A uniform code is converted and
 * scaled with one FMA. The weights are then consumed by FMAs against every token's
 * activations, so a weight is decoded once per call however many tokens there are.
 * Everything else (odd widths, b in 5..7, no AVX-512) runs the portable loops, which are also
 * the reference the fast path is tested against.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

typedef struct {
    int64_t rows, cols;
    int64_t bits;
    int64_t kind;              /* 0 palette, 1 uniform */
    const uint8_t *codes;
    int64_t codes_nbytes;
    const uint16_t *lut;       /* palette: float16 [rows / row_group, 2^bits] */
    int64_t row_group;
    const uint16_t *scale;     /* uniform: float16 [rows, n_groups] */
    const uint8_t *zeros;      /* uniform: packed [rows * n_groups] */
    int64_t zeros_nbytes;
    int64_t col_group;
} packed_t;

/* Below this many weights x tokens a parallel region costs more than it saves. */
#define PARALLEL_MIN_WORK 65536

static float half_to_float(uint16_t h) {
#ifdef __F16C__
    return _cvtsh_ss(h);
#endif
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) {  /* subnormal: renormalise */
        exp = 113;
        while (!(man & 0x400)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Value i of a b-bit stream of n bytes (b <= 8: a value spans at most two bytes). */
static inline uint32_t code_at(const uint8_t *s, int64_t nbytes, int64_t i, int64_t b) {
    const int64_t bit = i * b, byte = bit >> 3, off = bit & 7;
    uint32_t v = s[byte];
    if (off + b > 8 && byte + 1 < nbytes) v |= (uint32_t)s[byte + 1] << 8;
    return (v >> off) & ((1u << b) - 1);
}

static inline int64_t n_groups(const packed_t *w) { return (w->cols + w->col_group - 1) / w->col_group; }

/* The float table of row r (palette) or of row r, column group g (uniform): t[k] = w for code k. */
static void row_table(const packed_t *w, int64_t r, int64_t g, float *t) {
    const int64_t n = (int64_t)1 << w->bits;
    if (w->kind == 0) {
        const uint16_t *l = w->lut + (r / w->row_group) * n;
        for (int64_t k = 0; k < n; k++) t[k] = half_to_float(l[k]);
    } else {
        const int64_t ng = n_groups(w);
        const float s = half_to_float(w->scale[r * ng + g]);
        const float z = (float)code_at(w->zeros, w->zeros_nbytes, r * ng + g, w->bits);
        for (int64_t k = 0; k < n; k++) t[k] = ((float)k - z) * s;
    }
}

/* ---- portable path: any width, any b in 1..8 ---- */

static void gemv_row_portable(const packed_t *w, int64_t r, const float *x, int64_t T, float *y) {
    float t[256];
    const int64_t cols = w->cols, seg = w->kind == 0 ? cols : w->col_group;
    for (int64_t n = 0; n < T; n++) y[n * w->rows + r] = 0.0f;
    for (int64_t j0 = 0, g = 0; j0 < cols; j0 += seg, g++) {
        const int64_t j1 = j0 + seg < cols ? j0 + seg : cols;
        row_table(w, r, g, t);
        for (int64_t n = 0; n < T; n++) {
            const float *xn = x + n * cols;
            float acc = 0.0f;
            for (int64_t j = j0; j < j1; j++) acc += t[code_at(w->codes, w->codes_nbytes, r * cols + j, w->bits)] * xn[j];
            y[n * w->rows + r] += acc;
        }
    }
}

static void decode_row_portable(const packed_t *w, int64_t r, float *out) {
    float t[256];
    const int64_t cols = w->cols, seg = w->kind == 0 ? cols : w->col_group;
    for (int64_t j0 = 0, g = 0; j0 < cols; j0 += seg, g++) {
        const int64_t j1 = j0 + seg < cols ? j0 + seg : cols;
        row_table(w, r, g, t);
        for (int64_t j = j0; j < j1; j++) out[j] = t[code_at(w->codes, w->codes_nbytes, r * cols + j, w->bits)];
    }
}

/* ---- AVX-512 path ---- */
#ifdef __AVX512F__

static int fast_ok(const packed_t *w) {
    if (w->cols % 16) return 0;                       /* 16 columns = 2b whole bytes, rows byte aligned */
    if (w->kind == 0) return w->bits <= 4 || w->bits == 8;
    return (w->bits <= 4 || w->bits == 8) && w->col_group % 16 == 0;
}

/* Modes of the inner loops, constants at every call so each loop is compiled for one of them. */
enum { UNIFORM = 0, PALETTE_SMALL = 1, PALETTE_GATHER = 2 };

/* The 16 codes at p (2b bytes; reads 8, so the caller keeps the last row for the portable path)
 * as int32 lanes: lanes 0-7 from the low word, 8-15 from the word b bytes on. */
static inline __attribute__((always_inline)) __m512i codes16(const uint8_t *p, int64_t b, __m512i shifts,
                                                            __m512i mask) {
    if (b == 8) return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    uint64_t word;
    memcpy(&word, p, 8);
    const __m512i v = _mm512_mask_set1_epi32(_mm512_set1_epi32((int)(uint32_t)word), 0xFF00,
                                             (int)(uint32_t)(word >> (8 * b)));
    return _mm512_and_si512(_mm512_srlv_epi32(v, shifts), mask);
}

/* 16 weights from their codes; a uniform weight comes back as its code (the row's products
 * scale and shift a whole segment's sum at once, one FMA per segment instead of one per 16). */
static inline __attribute__((always_inline)) __m512 weights16(int mode, __m512i c, __m512 tv, const float *t) {
    if (mode == UNIFORM) return _mm512_cvtepi32_ps(c);
    if (mode == PALETTE_SMALL) return _mm512_permutexvar_ps(c, tv);
    return _mm512_i32gather_ps(c, t, 4);
}

typedef struct {
    __m512i shifts, mask;
    int64_t bits;
    int mode;
} lanes_t;

static lanes_t make_lanes(const packed_t *w) {
    lanes_t l;
    int32_t s[16];
    for (int i = 0; i < 16; i++) s[i] = (int32_t)((i % 8) * w->bits);
    l.shifts = _mm512_loadu_si512(s);
    l.mask = _mm512_set1_epi32((int)((1u << w->bits) - 1));
    l.bits = w->bits;
    l.mode = w->kind == 1 ? UNIFORM : w->bits <= 4 ? PALETTE_SMALL : PALETTE_GATHER;
    return l;
}

/* Segment parameters of row r, segment g: palette table into t (zero-padded to 16), or uniform
 * scale s and zero * scale zs. */
static void segment(const packed_t *w, int64_t r, int64_t g, float *t, float *s, float *zs) {
    if (w->kind == 0) {
        for (int k = 0; k < 16; k++) t[k] = 0.0f;
        row_table(w, r, 0, t);
        *s = *zs = 0.0f;
    } else {
        const int64_t ng = n_groups(w);
        *s = half_to_float(w->scale[r * ng + g]);
        *zs = (float)code_at(w->zeros, w->zeros_nbytes, r * ng + g, w->bits) * *s;
    }
}

/* sum over columns [j0, j1) of w * x for one token, two accumulators (an FMA chain of one would
 * wait on its own latency). */
static inline __attribute__((always_inline)) __m512 dot1(int mode, const lanes_t *L, const uint8_t *row,
                                                        int64_t j0, int64_t j1, const float *t, const float *x) {
    const int64_t b = L->bits;
    const __m512 tv = mode == PALETTE_SMALL ? _mm512_loadu_ps(t) : _mm512_setzero_ps();
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t j = j0;
    for (; j + 32 <= j1; j += 32) {
        const __m512 w0 = weights16(mode, codes16(row + j * b / 8, b, L->shifts, L->mask), tv, t);
        const __m512 w1 = weights16(mode, codes16(row + (j + 16) * b / 8, b, L->shifts, L->mask), tv, t);
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + j + 16), a1);
    }
    if (j < j1) {
        const __m512 w0 = weights16(mode, codes16(row + j * b / 8, b, L->shifts, L->mask), tv, t);
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + j), a0);
    }
    return _mm512_add_ps(a0, a1);
}

/* The same for up to TOKEN_BLOCK tokens (rows of x, ldx apart) into a[0..nb): each weight decoded once. */
#define TOKEN_BLOCK 4
static inline __attribute__((always_inline)) void dotn(int mode, const lanes_t *L, const uint8_t *row,
                                                      int64_t j0, int64_t j1, const float *t,
                                                      const float *x, int64_t ldx, int64_t nb, __m512 *a) {
    const int64_t b = L->bits;
    const __m512 tv = mode == PALETTE_SMALL ? _mm512_loadu_ps(t) : _mm512_setzero_ps();
    for (int n = 0; n < TOKEN_BLOCK; n++) a[n] = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; j += 16) {
        const __m512 wv = weights16(mode, codes16(row + j * b / 8, b, L->shifts, L->mask), tv, t);
        for (int n = 0; n < TOKEN_BLOCK; n++)
            if (n < nb) a[n] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + n * ldx + j), a[n]);
    }
}

/* Row r of y for T tokens. xsum [T, n_groups]: each token's sum over every column group (uniform:
 * sum_j (q_j - z) s x_j = s (sum_j q_j x_j) - z s (sum_j x_j)). */
static inline __attribute__((always_inline)) void gemv_row_mode(int mode, const packed_t *w, const lanes_t *L,
                                                               int64_t r, const float *x, int64_t T,
                                                               const float *xsum, float *y) {
    float t[256];
    const int64_t cols = w->cols, seg = w->kind == 0 ? cols : w->col_group, ng = w->kind == 0 ? 1 : n_groups(w);
    const uint8_t *row = w->codes + r * cols * w->bits / 8;
    for (int64_t n0 = 0; n0 < T; n0 += TOKEN_BLOCK) {
        const int64_t nb = T - n0 < TOKEN_BLOCK ? T - n0 : TOKEN_BLOCK;
        __m512 acc[TOKEN_BLOCK], part[TOKEN_BLOCK];
        float shift[TOKEN_BLOCK] = {0.0f};
        for (int n = 0; n < TOKEN_BLOCK; n++) acc[n] = _mm512_setzero_ps();
        for (int64_t j0 = 0, g = 0; j0 < cols; j0 += seg, g++) {
            const int64_t j1 = j0 + seg < cols ? j0 + seg : cols;
            float s, zs;
            segment(w, r, g, t, &s, &zs);
            if (nb == 1) part[0] = dot1(mode, L, row, j0, j1, t, x + n0 * cols);
            else dotn(mode, L, row, j0, j1, t, x + n0 * cols, cols, nb, part);
            for (int64_t n = 0; n < nb; n++) {
                if (mode == UNIFORM) {
                    acc[n] = _mm512_fmadd_ps(part[n], _mm512_set1_ps(s), acc[n]);
                    shift[n] += zs * xsum[(n0 + n) * ng + g];
                } else {
                    acc[n] = _mm512_add_ps(acc[n], part[n]);
                }
            }
        }
        for (int64_t n = 0; n < nb; n++) y[(n0 + n) * w->rows + r] = _mm512_reduce_add_ps(acc[n]) - shift[n];
    }
}

static void gemv_row_fast(const packed_t *w, const lanes_t *L, int64_t r, const float *x, int64_t T,
                          const float *xsum, float *y) {
    if (r == w->rows - 1 && w->bits != 8) {  /* 8-byte loads would read past the stream's end */
        gemv_row_portable(w, r, x, T, y);
        return;
    }
    switch (L->mode) {
        case UNIFORM: gemv_row_mode(UNIFORM, w, L, r, x, T, xsum, y); break;
        case PALETTE_SMALL: gemv_row_mode(PALETTE_SMALL, w, L, r, x, T, xsum, y); break;
        default: gemv_row_mode(PALETTE_GATHER, w, L, r, x, T, xsum, y);
    }
}

static void decode_row_fast(const packed_t *w, const lanes_t *L, int64_t r, float *out) {
    if (r == w->rows - 1 && w->bits != 8) {
        decode_row_portable(w, r, out);
        return;
    }
    float t[256];
    const int64_t cols = w->cols, seg = w->kind == 0 ? cols : w->col_group, b = w->bits;
    const uint8_t *row = w->codes + r * cols * b / 8;
    for (int64_t j0 = 0, g = 0; j0 < cols; j0 += seg, g++) {
        const int64_t j1 = j0 + seg < cols ? j0 + seg : cols;
        float s, zs;
        segment(w, r, g, t, &s, &zs);
        const __m512 tv = _mm512_loadu_ps(t), sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(zs);
        for (int64_t j = j0; j < j1; j += 16) {
            const __m512 c = weights16(L->mode, codes16(row + j * b / 8, b, L->shifts, L->mask), tv, t);
            _mm512_storeu_ps(out + j, L->mode == UNIFORM ? _mm512_fmsub_ps(c, sv, zv) : c);
        }
    }
}
#endif

/* Which path runs for this weight: 1 the AVX-512 one, 0 the portable one. */
int packed_fast_path(const packed_t *w) {
#ifdef __AVX512F__
    return fast_ok(w);
#else
    (void)w;
    return 0;
#endif
}

/* y [T, rows] = x [T, cols] W^T. */
int packed_gemv(const packed_t *w, const float *x, int64_t T, float *y, int threads, int portable) {
    const int wide = w->rows * w->cols * T >= PARALLEL_MIN_WORK;
#ifdef __AVX512F__
    if (!portable && fast_ok(w)) {
        const lanes_t L = make_lanes(w);
        const int64_t ng = n_groups(w);
        float *xsum = malloc(sizeof(float) * (size_t)(T * ng));
        if (!xsum) return 1;
        for (int64_t n = 0; n < T; n++)
            for (int64_t g = 0; g < ng; g++) {
                float acc = 0.0f;
                for (int64_t j = g * w->col_group; j < (g + 1) * w->col_group && j < w->cols; j++) acc += x[n * w->cols + j];
                xsum[n * ng + g] = acc;
            }
#pragma omp parallel for num_threads(threads) schedule(static) if (wide)
        for (int64_t r = 0; r < w->rows; r++) gemv_row_fast(w, &L, r, x, T, xsum, y);
        free(xsum);
        return 0;
    }
#endif
    (void)portable;
#pragma omp parallel for num_threads(threads) schedule(static) if (wide)
    for (int64_t r = 0; r < w->rows; r++) gemv_row_portable(w, r, x, T, y);
    return 0;
}

/* out [n, cols] = rows ids[0..n) of W (an embedding look-up, or a tile of consecutive rows). */
int packed_decode_rows(const packed_t *w, const int64_t *ids, int64_t n, float *out, int threads, int portable) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->rows) return 1;
    const int wide = n * w->cols >= PARALLEL_MIN_WORK;
#ifdef __AVX512F__
    if (!portable && fast_ok(w)) {
        const lanes_t L = make_lanes(w);
#pragma omp parallel for num_threads(threads) schedule(static) if (wide)
        for (int64_t i = 0; i < n; i++) decode_row_fast(w, &L, ids[i], out + i * w->cols);
        return 0;
    }
#endif
    (void)portable;
#pragma omp parallel for num_threads(threads) schedule(static) if (wide)
    for (int64_t i = 0; i < n; i++) decode_row_portable(w, ids[i], out + i * w->cols);
    return 0;
}
