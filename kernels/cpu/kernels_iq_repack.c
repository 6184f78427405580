/* kernels_iq_repack.c - the repacked 8-row layouts of IQ4_XS and IQ4_NL (mx_block_iq4_xsx8,
 * mx_block_iq4_nlx8 in kernels_iq.h): the block converters repack.c's layout table calls.
 *
 * Why: IQ4_XS prefill dequantized each tile to f32 for sgemm (~1/3 of Q4_0's repacked VNNI
 * speed); with the rows interleaved as Q4_0's are, one activation word serves 8 rows in
 * vpdpbusd (kernels_iq_avx512.c). IQ4_XS keeps Q4_0's byte order within a 32-value sub-block
 * (byte k: value k low, value 16 + k high), so the chunking is Q4_0's, per sub-block.
 */
#include "kernels/cpu/kernels_iq.h"

#include <string.h>

#include "core/base/util.h"

void mx_iq4_xsx8_repack(const void *const rows[8], void *dst) {
    mx_block_iq4_xsx8 *out = dst;
    for (int r = 0; r < 8; r++) {
        mx_block_iq4_xs b;
        memcpy(&b, rows[r], sizeof b);
        out->d[r] = b.d;
        memcpy(&out->scales_l[r], b.scales_l, 4);
        out->scales_h[r] = b.scales_h;
        for (int ib = 0; ib < MX_QK_K / 32; ib++)
            for (int j = 0; j < 4; j++)
                memcpy(&out->qs[ib][j][4 * r], b.qs + 16 * ib + 4 * j, 4);
    }
}

/* The scalar dequantizer's arithmetic (quant_iq.c): dl = d x (ls - 32), value = dl x level. */
void mx_iq4_xsx8_dequant(const void *src, int r, float *out) {
    const mx_block_iq4_xsx8 *a = src;
    const float d = mx_fp16_to_fp32(a->d[r]);
    for (int ib = 0; ib < MX_QK_K / 32; ib++, out += 32) {
        const int ls = (int)((a->scales_l[r] >> 4 * ib) & 0xf) |
                       (int)(((a->scales_h[r] >> 2 * ib) & 3) << 4);
        const float dl = d * (ls - 32);
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) {
                const uint8_t q = a->qs[ib][j][4 * r + k];
                out[4 * j + k] = dl * mx_kvalues_iq4nl[q & 0xf];
                out[16 + 4 * j + k] = dl * mx_kvalues_iq4nl[q >> 4];
            }
    }
}

void mx_iq4_nlx8_repack(const void *const rows[8], void *dst) {
    mx_block_iq4_nlx8 *out = dst;
    for (int r = 0; r < 8; r++) {
        mx_block_iq4_nl b;
        memcpy(&b, rows[r], sizeof b);
        out->d[r] = b.d;
        for (int j = 0; j < 4; j++)
            memcpy(&out->qs[j][4 * r], b.qs + 4 * j, 4);
    }
}

/* The scalar dequantizer's arithmetic (quant_iq.c): value = d x level. */
void mx_iq4_nlx8_dequant(const void *src, int r, float *out) {
    const mx_block_iq4_nlx8 *a = src;
    const float d = mx_fp16_to_fp32(a->d[r]);
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) {
            const uint8_t q = a->qs[j][4 * r + k];
            out[4 * j + k] = d * mx_kvalues_iq4nl[q & 0xf];
            out[16 + 4 * j + k] = d * mx_kvalues_iq4nl[q >> 4];
        }
}
