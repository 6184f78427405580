/* image.c - PNG/JPEG decoding into RGB8 and resampling.
 *
 * Workload: one image at a time, from a 64x64 icon to a 16384-px-wide photo, shown in a panel of
 * a few hundred pixels or written by the diffusion pipeline. Loading is bounded by MX_IMAGE_MAX_*
 * before any pixel allocation; resampling streams over source rows so a huge source costs one
 * pass and no second full-size buffer. Terminal encoders (sixel, half blocks) live in
 * tui/image_term.c.
 */
#include "core/image/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/base/util.h"
#include "core/image/png_text.h"

#ifdef HAVE_SIXEL
/* sixel.h defines its own PACKAGE_VERSION; this file does not use ours */
#undef PACKAGE_VERSION
#include <sixel.h>
#endif

void mx_image_free(struct mx_image *img) {
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

/* Checks w x h against the caps; on failure sets err with the path and the numbers. */
static int check_dims(const char *path, const char *kind, long w, long h, struct mx_err *err) {
    if (w <= 0 || h <= 0)
        return mx_err_set(err, MX_EFORMAT, "%s: %s has an empty size (%ldx%ld)", path, kind, w, h);
    if (w > MX_IMAGE_MAX_SIDE || h > MX_IMAGE_MAX_SIDE ||
        (unsigned long long)w * (unsigned long long)h > MX_IMAGE_MAX_PIXELS)
        return mx_err_set(err, MX_ERANGE,
                          "%s: %s is too large (%ldx%ld; at most %d px a side, %u Mpx)", path, kind,
                          w, h, MX_IMAGE_MAX_SIDE, MX_IMAGE_MAX_PIXELS >> 20);
    return 0;
}

/* Size of an open file in bytes (0 when unknown). */
static unsigned long long file_size(FILE *f) {
    struct stat st;
    return fstat(fileno(f), &st) == 0 && st.st_size > 0 ? (unsigned long long)st.st_size : 0;
}

/* ---- PNG (libpng) ---------------------------------------------------------------------------- */

/* libpng reports through callbacks; the first error and warning are kept for the message. */
struct png_msgs {
    char error[128];
    char warning[128];
};

/* libpng error: keep the message, unwind to load_png's setjmp. */
static void png_error_cb(png_structp png, png_const_charp msg) {
    struct png_msgs *m = png_get_error_ptr(png);
    if (m && !m->error[0])
        snprintf(m->error, sizeof m->error, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng warning: kept to explain a later error (e.g. which IHDR field was invalid). */
static void png_warning_cb(png_structp png, png_const_charp msg) {
    struct png_msgs *m = png_get_error_ptr(png);
    if (m && !m->warning[0])
        snprintf(m->warning, sizeof m->warning, "%s", msg);
}

/* libpng's own reader says only "Read Error" on a short file. */
static void png_read_cb(png_structp png, png_bytep data, size_t n) {
    FILE *f = png_get_io_ptr(png);
    if (fread(data, 1, n, f) != n)
        png_error(png, ferror(f) ? "read error" : "file ends early (truncated)");
}

/* Decodes an open PNG file into out. Returns 0 or MX_EFORMAT/MX_ERANGE/MX_ENOMEM with err set. */
static int load_png(FILE *f, const char *path, const uint8_t bg[3], struct mx_image *out,
                    struct mx_err *err) {
    struct png_msgs msgs = {"", ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &msgs, png_error_cb,
                                             png_warning_cb);
    if (!png)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory for the PNG decoder", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory for the PNG decoder", path);
    }
    /* Written after setjmp and read after a longjmp: volatile, or their values are lost. */
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = MX_EFORMAT;
    if (setjmp(png_jmpbuf(png))) {
        if (rc == MX_EFORMAT)
            mx_err_set(err, MX_EFORMAT, "%s: corrupt PNG (%s%s%s)", path,
                       msgs.error[0] ? msgs.error : "decoder error",
                       msgs.warning[0] ? "; " : "", msgs.warning);
        free(rows);
        free(pix);
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    png_set_read_fn(png, f, png_read_cb);
    png_set_chunk_malloc_max(png, 8u << 20); /* text/ICC chunks cannot ask for more */
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    int r = check_dims(path, "PNG", (long)w, (long)h, err);
    if (r < 0) {
        rc = r;
        png_longjmp(png, 1);
    }
    /* deflate packs at most ~1032:1, so a file must hold raw/1032 bytes of image data; a header
     * that claims more pixels than the file can carry is refused before a large allocation */
    int chans = png_get_channels(png, info);
    unsigned long long raw = (unsigned long long)h * (1 + ((unsigned long long)w * depth * chans
                                                           + 7) / 8);
    unsigned long long fsize = file_size(f);
    if (fsize && raw / 1032 > fsize + 64) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: corrupt PNG (%ux%u needs at least %llu bytes of "
                        "image data; the file has %llu)", path, w, h, raw / 1032, fsize);
        png_longjmp(png, 1);
    }
    /* Normalise every PNG flavour to 8-bit RGBA, then composite. */
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (trns)
        png_set_tRNS_to_alpha(png);
    if (depth == 16)
        png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(ctype & PNG_COLOR_MASK_ALPHA) && !trns)
        png_set_filler(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = (size_t)w * 4, total;
    if (png_get_rowbytes(png, info) != stride || !mx_mul_size(stride, h, &total)) {
        snprintf(msgs.error, sizeof msgs.error, "unexpected row size after conversion");
        png_longjmp(png, 1);
    }
    pix = malloc(total);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pix || !rows) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory for %ux%u pixels", path, w, h);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = pix + (size_t)y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* checks the CRCs and chunks after the pixels too */
    free(rows);
    rows = NULL;
    png_destroy_read_struct(&png, &info, NULL);

    /* RGBA -> RGB over bg, in place (the write index never passes the read index). */
    uint8_t *p = pix;
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++) {
        unsigned a = p[4 * i + 3];
        for (int c = 0; c < 3; c++)
            p[3 * i + c] = (uint8_t)((p[4 * i + c] * a + bg[c] * (255 - a) + 127) / 255);
    }
    uint8_t *shrunk = realloc(p, n * 3);
    out->rgb = shrunk ? shrunk : p;
    out->w = (int)w;
    out->h = (int)h;
    return 0;
}

/* ---- JPEG (libsixel's loader) ---------------------------------------------------------------- */

/* The EXIF orientation (1..8) in an APP1 segment's body b[0..n), or 1 when absent or malformed:
 * "Exif\0\0", a TIFF header (II or MM), IFD0's entries, tag 0x0112 (SHORT). Every offset is
 * checked against n. */
static int exif_orientation(const uint8_t *b, size_t n) {
    if (n < 14 || memcmp(b, "Exif\0\0", 6) != 0)
        return 1;
    const uint8_t *t = b + 6;
    size_t tn = n - 6;
    bool le = t[0] == 'I' && t[1] == 'I';
    if (!le && !(t[0] == 'M' && t[1] == 'M'))
        return 1;
#define RD16(p) (le ? (uint32_t)((p)[0] | (p)[1] << 8) : (uint32_t)((p)[0] << 8 | (p)[1]))
#define RD32(p) (le ? ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 |     \
                       (uint32_t)(p)[3] << 24)                                                  \
                    : ((uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | \
                       (uint32_t)(p)[3]))
    uint32_t ifd = RD32(t + 4);
    if (RD16(t + 2) != 42 || ifd > tn || tn - ifd < 2)
        return 1;
    uint32_t count = RD16(t + ifd);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > tn)
            break;
        if (RD16(t + e) == 0x0112 && RD16(t + e + 2) == 3) {
            uint32_t v = RD16(t + e + 8);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
#undef RD16
#undef RD32
    return 1;
}

/* Walks the JPEG markers up to the frame header (SOFn) and returns its size, so a hostile file is
 * refused before the decoder allocates anything; *orient gets the EXIF orientation seen on the
 * way (1 when none). Returns 0 or MX_EFORMAT/MX_ERANGE. */
static int jpeg_size(FILE *f, const char *path, int *w, int *h, int *orient, struct mx_err *err) {
    *orient = 1;
    if (fseek(f, 2, SEEK_SET) != 0)
        return mx_err_set(err, MX_EIO, "%s: cannot seek", path);
    for (int guard = 0; guard < 10000; guard++) {
        int c = fgetc(f);
        if (c != 0xff)
            break;
        int m;
        do m = fgetc(f); while (m == 0xff);
        if (m == EOF)
            break;
        if ((m >= 0xd0 && m <= 0xd7) || m == 0x01)
            continue; /* markers without a length */
        if (m == 0xd9 || m == 0xda)
            break;    /* end of image or scan data before any frame header */
        int hi = fgetc(f), lo = fgetc(f);
        if (hi == EOF || lo == EOF)
            break;
        long len = (hi << 8) | lo;
        if (len < 2)
            break;
        bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (sof) {
            unsigned char b[5];
            if (len < 7 || fread(b, 1, 5, f) != 5)
                break;
            *h = (b[1] << 8) | b[2];
            *w = (b[3] << 8) | b[4];
            return check_dims(path, "JPEG", *w, *h, err);
        }
        if (m == 0xe1 && *orient == 1) { /* APP1: EXIF (or XMP), at most 64 KB */
            size_t want = (size_t)len - 2;
            uint8_t *seg = malloc(want);
            if (!seg || fread(seg, 1, want, f) != want) {
                free(seg);
                break;
            }
            *orient = exif_orientation(seg, want);
            free(seg);
            continue;
        }
        if (fseek(f, len - 2, SEEK_CUR) != 0)
            break;
    }
    return mx_err_set(err, MX_EFORMAT, "%s: corrupt JPEG (no frame header before the data)",
                      path);
}

#ifdef HAVE_SIXEL
struct jpeg_ctx {
    struct mx_image *out;
    int want_w, want_h;        /* from the SOF header, already checked */
    int rc;
};

/* libsixel hands over the decoded frame; copied to RGB8 here (the frame is libsixel's). */
static SIXELSTATUS jpeg_frame_cb(sixel_frame_t *frame, void *ud) {
    struct jpeg_ctx *c = ud;
    int w = sixel_frame_get_width(frame), h = sixel_frame_get_height(frame);
    int fmt = sixel_frame_get_pixelformat(frame);
    unsigned char *src = sixel_frame_get_pixels(frame);
    if (w != c->want_w || h != c->want_h || !src) {
        c->rc = MX_EFORMAT;
        return SIXEL_BAD_INPUT;
    }
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) {
        c->rc = MX_ENOMEM;
        return SIXEL_BAD_ALLOCATION;
    }
    if (fmt == SIXEL_PIXELFORMAT_RGB888) {
        memcpy(rgb, src, (size_t)w * h * 3);
    } else {
        int dst_fmt = 0;
        if (fmt & SIXEL_FORMATTYPE_PALETTE ||
            SIXEL_FAILED(sixel_helper_normalize_pixelformat(rgb, &dst_fmt, src, fmt, w, h)) ||
            dst_fmt != SIXEL_PIXELFORMAT_RGB888) {
            free(rgb);
            c->rc = MX_EFORMAT;
            return SIXEL_BAD_INPUT;
        }
    }
    c->out->rgb = rgb;
    c->out->w = w;
    c->out->h = h;
    c->rc = 0;
    return SIXEL_OK;
}
#endif

/* Turns img as EXIF orientation o (2..8) says, so it shows the way the camera meant: for each
 * shown pixel, the stored one it comes from. Returns 0 or MX_ENOMEM (img unchanged). */
static int apply_orientation(struct mx_image *img, int o) {
    if (o < 2 || o > 8)
        return 0;
    int W = img->w, H = img->h;
    bool swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = malloc((size_t)W * H * 3);
    if (!dst)
        return MX_ENOMEM;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;             /* mirrored */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;     /* upside down */
            case 4: sx = x; sy = H - 1 - y; break;             /* mirrored vertically */
            case 5: sx = y; sy = x; break;                     /* transposed */
            case 6: sx = y; sy = H - 1 - x; break;             /* turned 90 clockwise */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;     /* transverse */
            default: sx = W - 1 - y; sy = x; break;            /* 8: 90 counter-clockwise */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->w = ow;
    img->h = oh;
    return 0;
}

static int load_jpeg(FILE *f, const char *path, struct mx_image *out, struct mx_err *err) {
    int w = 0, h = 0, orient = 1;
    int rc = jpeg_size(f, path, &w, &h, &orient, err);
    if (rc < 0)
        return rc;
    /* Even a flat progressive JPEG spends a bit per 8x8 block on its DC scan: ~500 px a byte at
     * most; 1024 px a byte is refused as a header lying about its size (before allocation). */
    unsigned long long fsize = file_size(f);
    if (fsize && (unsigned long long)w * h / 1024 > fsize + 1024)
        return mx_err_set(err, MX_EFORMAT, "%s: corrupt JPEG (%dx%d in a file of %llu bytes)",
                          path, w, h, fsize);
#ifdef HAVE_SIXEL
    struct jpeg_ctx c = {out, w, h, MX_EFORMAT};
    sixel_allocator_t *al = NULL;
    if (SIXEL_FAILED(sixel_allocator_new(&al, malloc, calloc, realloc, free)))
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory for the JPEG decoder", path);
    /* libsixel reads "-" as stdin: name such a file by its relative path instead */
    const char *name = strcmp(path, "-") ? path : "./-";
    SIXELSTATUS st = sixel_helper_load_image_file(name, 1, 0, SIXEL_PALETTE_MAX, NULL,
                                                  SIXEL_LOOP_DISABLE, jpeg_frame_cb, 0, NULL, &c,
                                                  al);
    sixel_allocator_unref(al);
    if (SIXEL_FAILED(st) || c.rc < 0 || !out->rgb) {
        mx_image_free(out);
        if (c.rc == MX_ENOMEM)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory for %dx%d pixels", path, w, h);
        const char *more = sixel_helper_get_additional_message();
        return mx_err_set(err, MX_EFORMAT, "%s: corrupt JPEG (%s%s%s)", path,
                          sixel_helper_format_error(st), more && more[0] ? ": " : "",
                          more ? more : "");
    }
    if (apply_orientation(out, orient) < 0) {
        mx_image_free(out);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory turning %dx%d pixels", path, w, h);
    }
    return 0;
#else
    (void)out;
    return mx_err_set(err, MX_EUNSUP, "%s: JPEG needs libsixel (this build has none); "
                      "convert it to PNG", path);
#endif
}

int mx_image_load(const char *path, struct mx_image *out, struct mx_err *err) {
    static const uint8_t black[3] = {0, 0, 0};
    return mx_image_load_over(path, black, out, err);
}

int mx_image_load_over(const char *path, const uint8_t bg[3], struct mx_image *out,
                       struct mx_err *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : MX_EIO, "%s: %s", path,
                          strerror(errno));
    unsigned char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    int rc;
    if (n == 8 && !png_sig_cmp(magic, 0, 8)) {
        rewind(f);
        rc = load_png(f, path, bg, out, err);
    } else if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
        rc = load_jpeg(f, path, out, err);
    } else {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a PNG or JPEG file%s", path,
                        n == 0 ? " (empty)" : "");
    }
    fclose(f);
    return rc;
}

/* ---- resampling ------------------------------------------------------------------------------ */

/* For each output index along one axis: the first source index and its weights (summing to 1). */
struct taps {
    int n_max;         /* weights stored per output index */
    int *first;        /* (dn): first source index */
    int *count;        /* (dn): weights used */
    float *w;          /* (dn, n_max) */
};

/* Frees the tables (t itself is the caller's). */
static void taps_free(struct taps *t) {
    free(t->first);
    free(t->count);
    free(t->w);
}

/* Shrinking: output i is the mean of source [i*s, (i+1)*s) with fractional edge pixels (area
 * averaging). Growing: bilinear between the two nearest source centres, edges clamped. */
static int taps_make(int sn, int dn, struct taps *t) {
    double s = (double)sn / dn;
    t->n_max = sn >= dn ? (int)ceil(s) + 2 : 2;
    t->first = calloc((size_t)dn, sizeof *t->first);
    t->count = calloc((size_t)dn, sizeof *t->count);
    t->w = calloc((size_t)dn * t->n_max, sizeof *t->w);
    if (!t->first || !t->count || !t->w) {
        taps_free(t);
        return MX_ENOMEM;
    }
    for (int i = 0; i < dn; i++) {
        float *w = t->w + (size_t)i * t->n_max;
        if (sn >= dn) {
            double a = i * s, b = (i + 1) * s;
            int j0 = (int)floor(a), j1 = MX_MIN((int)ceil(b), sn); /* [j0, j1) */
            int k = 0;
            for (int j = j0; j < j1 && k < t->n_max; j++, k++) {
                double lo = MX_MAX(a, (double)j), hi = MX_MIN(b, (double)(j + 1));
                w[k] = (float)((hi - lo) / s);
            }
            t->first[i] = j0;
            t->count[i] = k;
        } else {
            double c = (i + 0.5) * s - 0.5;
            int j0 = (int)floor(c);
            double f = c - j0;
            if (j0 < 0) {
                j0 = 0;
                f = 0;
            }
            if (j0 >= sn - 1) {
                j0 = sn - 1;
                f = 0;
            }
            t->first[i] = j0;
            t->count[i] = f > 0 ? 2 : 1;
            w[0] = (float)(1 - f);
            w[1] = (float)f;
        }
    }
    return 0;
}

int mx_image_scale(const struct mx_image *src, int dw, int dh, struct mx_image *out) {
    memset(out, 0, sizeof *out);
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0 || dw <= 0 || dh <= 0)
        return MX_EINVAL;
    if (dw > MX_IMAGE_MAX_SIDE || dh > MX_IMAGE_MAX_SIDE ||
        (size_t)dw * (size_t)dh > MX_IMAGE_MAX_PIXELS)
        return MX_ERANGE;
    struct taps tx = {0}, ty = {0};
    float *acc = NULL, *hrow = NULL;
    uint8_t *dst = NULL;
    int rc = MX_ENOMEM;
    if (taps_make(src->w, dw, &tx) < 0 || taps_make(src->h, dh, &ty) < 0)
        goto fail;
    acc = malloc(sizeof(float) * 3 * (size_t)dw);   /* acc: (dw, 3) one output row */
    hrow = malloc(sizeof(float) * 3 * (size_t)dw);  /* hrow: (dw, 3) a source row, resampled */
    dst = malloc((size_t)dw * dh * 3);
    if (!acc || !hrow || !dst)
        goto fail;
    for (int y = 0; y < dh; y++) {
        memset(acc, 0, sizeof(float) * 3 * (size_t)dw);
        const float *wy = ty.w + (size_t)y * ty.n_max;
        for (int k = 0; k < ty.count[y]; k++) {
            const uint8_t *row = src->rgb + (size_t)(ty.first[y] + k) * src->w * 3;
            for (int x = 0; x < dw; x++) {
                const float *wx = tx.w + (size_t)x * tx.n_max;
                const uint8_t *p = row + (size_t)tx.first[x] * 3;
                float r = 0, g = 0, b = 0;
                for (int m = 0; m < tx.count[x]; m++, p += 3) {
                    r += wx[m] * p[0];
                    g += wx[m] * p[1];
                    b += wx[m] * p[2];
                }
                hrow[3 * x] = r;
                hrow[3 * x + 1] = g;
                hrow[3 * x + 2] = b;
            }
            for (int i = 0; i < 3 * dw; i++)
                acc[i] += wy[k] * hrow[i];
        }
        uint8_t *o = dst + (size_t)y * dw * 3;
        for (int i = 0; i < 3 * dw; i++) {
            float v = acc[i] + 0.5f;
            o[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    out->rgb = dst;
    out->w = dw;
    out->h = dh;
    dst = NULL;
    rc = 0;
fail:
    free(dst);
    free(hrow);
    free(acc);
    taps_free(&ty);
    taps_free(&tx);
    return rc;
}

/* ---- PNG writing ---------------------------------------------------------------------------- */

/* One text chunk to write: Latin-1 bytes for tEXt, else UTF-8 for an uncompressed iTXt. */
struct png_text_out {
    const char *key;   /* keyword, 1-79 printable ASCII bytes; borrowed */
    char *text;        /* chunk text, NUL-terminated; owned by the caller of write_png_rows */
    size_t len;        /* bytes of text */
    int itxt;          /* 1: iTXt (UTF-8), 0: tEXt (Latin-1) */
};

/* Writes the rows with libpng into f, with the text chunk t (NULL: none) before the pixels as
 * Pillow places it; its errors unwind here. Returns 0 or -1 (m says why). */
static int write_png_rows(FILE *f, const struct mx_image *img, const struct png_text_out *t,
                          struct png_msgs *m) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, m, png_error_cb,
                                              png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        snprintf(m->error, sizeof m->error, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (t) {
        png_text pt;
        memset(&pt, 0, sizeof pt);
        pt.compression = t->itxt ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
        pt.key = (png_charp)t->key;
        pt.text = t->text;
        if (t->itxt)
            pt.itxt_length = t->len;
        else
            pt.text_length = t->len;
        png_set_text(png, info, &pt, 1);
    }
    png_write_info(png, info);
    for (int y = 0; y < img->h; y++)
        png_write_row(png, img->rgb + (size_t)y * (size_t)img->w * 3);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* Writes img (and the text chunk t, NULL: none) at path through path.part and a rename. */
static int save_png(const struct mx_image *img, const char *path, const struct png_text_out *t,
                    struct mx_err *err) {
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
        return mx_err_set(err, MX_EINVAL, "%s: no image to write", path);
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.part", path) >= (int)sizeof tmp)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : errno == EACCES ? MX_EPERM : MX_EIO,
                          "%s: %s", path, strerror(errno));
    struct png_msgs m = {{0}, {0}};
    int bad = write_png_rows(f, img, t, &m);
    bad |= ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mx_err_set(err, MX_EIO, "%s: writing failed (%s)", path,
                          m.error[0] ? m.error : strerror(e));
    }
    return 0;
}

int mx_image_save_png(const struct mx_image *img, const char *path, struct mx_err *err) {
    return save_png(img, path, NULL, err);
}

int mx_image_save_png_text(const struct mx_image *img, const char *path, const char *key,
                           const char *text, struct mx_err *err) {
    if (!key || !text)
        return mx_err_set(err, MX_EINVAL, "%s: no text chunk given", path);
    size_t klen = strlen(key);
    bool key_ok = klen >= 1 && klen <= 79 && key[0] != ' ' && key[klen - 1] != ' ';
    for (size_t i = 0; key_ok && i < klen; i++)
        key_ok = key[i] >= 0x20 && key[i] < 0x7f && !(key[i] == ' ' && key[i + 1] == ' ');
    if (!key_ok)
        return mx_err_set(err, MX_EINVAL, "%s: bad PNG text keyword (1-79 printable ASCII "
                          "characters, no leading, trailing or double spaces)", path);
    size_t len = strlen(text);
    if (len > MX_PNG_TEXT_MAX)
        return mx_err_set(err, MX_ERANGE, "%s: text of %zu bytes for '%s' (limit %u)", path,
                          len, key, MX_PNG_TEXT_MAX);
    // Pillow's PngInfo.add_text: tEXt when the text encodes as Latin-1, else iTXt (UTF-8).
    struct png_text_out t = {key, NULL, 0, 0};
    int rc = mx_utf8_to_latin1(text, len, &t.text, &t.len);
    if (rc == 0) {
        t.itxt = 1;
        rc = mx_utf8_sanitize_dup(text, len, &t.text);
        t.len = rc == 0 ? strlen(t.text) : 0;
    }
    if (rc < 0)
        return mx_err_set(err, rc, "%s: out of memory for the text chunk", path);
    rc = save_png(img, path, &t, err);
    free(t.text);
    return rc;
}
