/* text.c - sanitising, measuring and wrapping UTF-8 for the terminal (see text.h). */
#include "core/base/text.h"

#include <stdio.h>
#include <string.h>
#include <wchar.h>

size_t mx_utf8_decode(const char *s, size_t len, unsigned int *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned int c = u[0];
    size_t n;
    unsigned int min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2; c &= 0x1f; min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3; c &= 0x0f; min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4; c &= 0x07; min = 0x10000;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (n > len) {
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3f);
    }
    /* overlong forms, surrogates and values past U+10FFFF are not characters */
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = c;
    return n;
}

size_t mx_utf8_put(uint32_t cp, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (cp > 0x10FFFF)
        cp = 0xFFFD;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Bidi embedding/override/isolate controls: they can make text display in another order than it
 * is stored (the "trojan source" trick), so they are shown, not obeyed. */
static bool is_bidi_control(unsigned int cp) {
    return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e ||
           cp == 0x200f || cp == 0x061c;
}

size_t mx_text_sanitize(const char *src, size_t len, char *dst, bool keep_newlines) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        size_t n = mx_utf8_decode(src + i, len - i, &cp);
        if (cp < 0x20 || cp == 0x7f) {
            if (keep_newlines && (cp == '\n' || cp == '\t')) {
                dst[o++] = (char)cp;
            } else {
                dst[o++] = '^';
                dst[o++] = cp == 0x7f ? '?' : (char)(cp ^ 0x40);
            }
        } else if ((cp >= 0x80 && cp <= 0x9f) || is_bidi_control(cp)) {
            o += (size_t)sprintf(dst + o, "<U+%04X>", cp);
        } else {
            o += mx_utf8_put(cp, dst + o);
        }
        i += n;
    }
    dst[o] = '\0';
    return o;
}

int mx_char_width(unsigned int cp) {
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
        return -1;
    int w = wcwidth((wchar_t)cp);
    if (w < 0)
        return 1; /* unassigned in this libc's tables: assume one column, like most terminals */
    return w;
}

int mx_text_width(const char *s, size_t len) {
    int w = 0;
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        i += mx_utf8_decode(s + i, len - i, &cp);
        int cw = mx_char_width(cp);
        if (cw > 0)
            w += cw;
    }
    return w;
}

size_t mx_text_wrap(const char *s, size_t len, int width, size_t *next) {
    if (width < 1)
        width = 1;
    int col = 0;
    size_t i = 0, last_space = 0;
    bool have_space = false;
    while (i < len) {
        if (s[i] == '\n') {
            *next = i + 1;
            return i;
        }
        unsigned int cp;
        size_t n = mx_utf8_decode(s + i, len - i, &cp);
        int cw = mx_char_width(cp);
        if (cw < 0)
            cw = 0;
        if (col + cw > width && i > 0) {
            if (cp == ' ') { /* the overflowing character is itself the break */
                *next = i + 1;
                return i;
            }
            if (have_space && last_space > 0) {
                *next = last_space + 1;
                return last_space;
            }
            *next = i;
            return i;
        }
        if (cp == ' ') {
            last_space = i;
            have_space = true;
        }
        col += cw;
        i += n;
        /* a combining mark that follows belongs to this character: never break before it */
        while (i < len) {
            size_t m = mx_utf8_decode(s + i, len - i, &cp);
            if (cp == '\n' || mx_char_width(cp) != 0 || cp < 0x20)
                break;
            i += m;
        }
    }
    *next = len;
    return len;
}

void mx_fmt_bytes(double n, char *buf, size_t size) {
    if (n >= 1e9)
        snprintf(buf, size, "%.2f GB", n / 1e9);
    else if (n >= 1e8)
        snprintf(buf, size, "%.0f MB", n / 1e6);
    else if (n >= 1e6)
        snprintf(buf, size, "%.1f MB", n / 1e6);
    else
        snprintf(buf, size, "%.0f KB", n / 1e3);
}

void mx_text_bar(double frac, int cells, char *buf, size_t size) {
    int fill = (int)(frac * cells + 0.5);
    size_t o = 0;
    if (size)
        buf[0] = '\0';
    for (int k = 0; k < cells && o < size; k++)
        o += (size_t)snprintf(buf + o, size - o, "%s",
                              k < fill ? "\xe2\x96\x88" : "\xe2\x96\x91"); /* █ ░ */
}
