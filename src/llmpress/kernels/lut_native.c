/* Look-up-table products y = x W^T for BCQ weights, straight from the packed bit-planes
 * (ShiftAddLLM, You et al. 2024; the table trick of LUT-GEMM). Built and loaded by native.py.
 *
 * W = sum_i alpha_i * B_i, B_i in {-1,+1}, packed 8 columns per byte (bit k = column 8c+k,
 * 1 = +1). For each chunk c of 8 inputs the 256 signed sums +-x_0 ... +-x_7 form a table, so
 * B_i[r, 8c:8c+8] . x[8c:8c+8] is table[c][byte]: one load and one add per byte.
 *
 * Shapes (all contiguous, row-major):
 *   x      float [T, cols]          planes uint8 [q, rows, cols/8]
 *   scales float [q, rows/rg, cols/cg] (alpha, exactly the sum of its signed powers of two)
 *   y      float [T, rows]          (overwritten)
 * Column group cg: a multiple of 8 (scales per block of bytes: the table result is scaled) or
 * 1, 2, 4 (scales change inside a byte: the activations are scaled before the tables are built,
 * one set of tables per plane and row block).
 */
#include <stdint.h>
#include <stdlib.h>

/* Below this many table reads per token a parallel region costs more than it saves. */
#define PARALLEL_MIN_READS 65536

/* t[256 * c + v] = sum_k (bit k of v ? +x[8c+k] : -x[8c+k]) for c < chunks. */
static void build_tables(const float *x, int64_t chunks, float *t) {
    for (int64_t c = 0; c < chunks; c++) {
        const float *xc = x + 8 * c;
        float *tc = t + 256 * c;
        float sum = 0.0f;
        for (int k = 0; k < 8; k++) sum += xc[k];
        tc[0] = -sum;
        for (int k = 0; k < 8; k++) {
            const int n = 1 << k;
            const float flip = 2.0f * xc[k];  /* turning bit k on moves -x_k to +x_k */
            for (int v = 0; v < n; v++) tc[v + n] = tc[v] + flip;
        }
    }
}

/* Sum of the table entries that the bytes p[c0..c1) select. Four running sums instead of one:
 * a single sum makes every add wait for the previous one (float adds are not reassociated), and
 * that latency, not the loads, bounded the look-ups. */
static inline float gather_sum(const float *t, const uint8_t *p, int64_t c0, int64_t c1) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) {
        a0 += t[256 * c + p[c]];
        a1 += t[256 * (c + 1) + p[c + 1]];
        a2 += t[256 * (c + 2) + p[c + 2]];
        a3 += t[256 * (c + 3) + p[c + 3]];
    }
    for (; c < c1; c++) a0 += t[256 * c + p[c]];
    return (a0 + a1) + (a2 + a3);
}

/* One output row of one token, scales per block of whole bytes (cg = 8 * per). */
static float row_blocks(const float *t, const uint8_t *planes, const float *scales, int q, int64_t rows,
                        int64_t chunks, int64_t r, int64_t rg, int64_t per, int64_t cb) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    for (int i = 0; i < q; i++) {
        const uint8_t *p = planes + ((int64_t)i * rows + r) * chunks;
        const float *s = scales + ((int64_t)i * (rows / rg) + r / rg) * cb;
        if (per == 1) {  /* a scale per byte (lat): the same four-way split, over the scaled entries */
            int64_t c = 0;
            for (; c + 4 <= chunks; c += 4) {
                a0 += s[c] * t[256 * c + p[c]];
                a1 += s[c + 1] * t[256 * (c + 1) + p[c + 1]];
                a2 += s[c + 2] * t[256 * (c + 2) + p[c + 2]];
                a3 += s[c + 3] * t[256 * (c + 3) + p[c + 3]];
            }
            for (; c < chunks; c++) a0 += s[c] * t[256 * c + p[c]];
        } else {
            for (int64_t b = 0; b < cb; b++) a0 += s[b] * gather_sum(t, p, b * per, (b + 1) * per);
        }
    }
    return (a0 + a1) + (a2 + a3);
}

int lut_matmul_blocks(const float *x, int64_t T, int64_t rows, int64_t cols, int q, const uint8_t *planes,
                      const float *scales, int64_t rg, int64_t cg, float *y, int threads) {
    const int64_t chunks = cols / 8, per = cg / 8, cb = cols / cg;
    if (T >= threads) {  /* prefill: a token per thread, each with its own tables */
        int failed = 0;
#pragma omp parallel num_threads(threads)
        {
            float *t = malloc(sizeof(float) * 256 * chunks);
            if (!t) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (int64_t n = 0; n < T; n++) {
                if (!t) continue;
                build_tables(x + n * cols, chunks, t);
                for (int64_t r = 0; r < rows; r++)
                    y[n * rows + r] = row_blocks(t, planes, scales, q, rows, chunks, r, rg, per, cb);
            }
            free(t);
        }
        return failed;
    }
    float *t = malloc(sizeof(float) * 256 * chunks);  /* decoding: one token, rows split over threads */
    if (!t) return 1;
    const int wide = (int64_t)q * rows * chunks >= PARALLEL_MIN_READS;
    for (int64_t n = 0; n < T; n++) {
        build_tables(x + n * cols, chunks, t);
#pragma omp parallel for num_threads(threads) schedule(static) if (wide)
        for (int64_t r = 0; r < rows; r++)
            y[n * rows + r] = row_blocks(t, planes, scales, q, rows, chunks, r, rg, per, cb);
    }
    free(t);
    return 0;
}

/* One token, scales inside bytes: for each plane i and row block a the tables are built from
 * x scaled column by column, then every row of the block reads them. Row blocks are disjoint in y. */
static void token_columns(const float *x, int64_t rows, int64_t cols, int q, const uint8_t *planes,
                          const float *scales, int64_t rg, int64_t cg, float *y, int64_t a, float *xs, float *t) {
    const int64_t chunks = cols / 8, cb = cols / cg, rb = rows / rg;
    for (int64_t r = a * rg; r < (a + 1) * rg; r++) y[r] = 0.0f;
    for (int i = 0; i < q; i++) {
        const float *s = scales + ((int64_t)i * rb + a) * cb;
        for (int64_t j = 0; j < cols; j++) xs[j] = s[j / cg] * x[j];
        build_tables(xs, chunks, t);
        for (int64_t r = a * rg; r < (a + 1) * rg; r++) {
            const uint8_t *p = planes + ((int64_t)i * rows + r) * chunks;
            y[r] += gather_sum(t, p, 0, chunks);
        }
    }
}

int lut_matmul_columns(const float *x, int64_t T, int64_t rows, int64_t cols, int q, const uint8_t *planes,
                       const float *scales, int64_t rg, int64_t cg, float *y, int threads) {
    const int64_t chunks = cols / 8, rb = rows / rg;
    const int64_t jobs = T * rb;  /* (token, row block) pairs write disjoint parts of y */
    const int wide = jobs > 1 && T * (int64_t)q * rows * chunks >= PARALLEL_MIN_READS;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (wide)
    {
        float *xs = malloc(sizeof(float) * cols);
        float *t = malloc(sizeof(float) * 256 * chunks);
        if (!xs || !t) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t job = 0; job < jobs; job++) {
            if (!xs || !t) continue;
            const int64_t n = job / rb, a = job % rb;
            token_columns(x + n * cols, rows, cols, q, planes, scales, rg, cg, y + n * rows, a, xs, t);
        }
        free(xs);
        free(t);
    }
    return failed;
}

/* W [rows, cols] = sum_i alpha_i * B_i, decoded from the packed planes (for long inputs, where one
 * dense product beats a table per token; the caller drops W after the product). */
int bcq_dequantize(const uint8_t *planes, const float *scales, int q, int64_t rows, int64_t cols, int64_t rg,
                   int64_t cg, float *w, int threads) {
    const int64_t chunks = cols / 8, cb = cols / cg, rb = rows / rg;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *out = w + r * cols;
        for (int64_t j = 0; j < cols; j++) out[j] = 0.0f;
        for (int i = 0; i < q; i++) {
            const uint8_t *p = planes + ((int64_t)i * rows + r) * chunks;
            const float *s = scales + ((int64_t)i * rb + r / rg) * cb;
            for (int64_t c = 0; c < chunks; c++)
                for (int k = 0; k < 8; k++) {
                    const int64_t j = 8 * c + k;
                    out[j] += (p[c] >> k & 1) ? s[j / cg] : -s[j / cg];
                }
        }
    }
    return 0;
}
