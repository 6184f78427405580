/* theme.c - parsing theme files and reducing colours to the terminal's palette. */
#include "tui/theme.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/util.h"
#include "history/paths.h"

static const char *const role_names[] = {
#define MX_THEME_NAME(name, desc) #name,
    MX_THEME_ROLES(MX_THEME_NAME)
#undef MX_THEME_NAME
};

const char *mx_theme_role_name(int role) {
    return role >= 0 && role < MX_ROLE_COUNT ? role_names[role] : NULL;
}

static const struct { const char *name; int index; } basic_names[] = {
    {"black", 0}, {"red", 1}, {"green", 2}, {"yellow", 3}, {"blue", 4}, {"magenta", 5},
    {"cyan", 6}, {"white", 7}, {"bright-black", 8}, {"grey", 8}, {"gray", 8},
    {"bright-red", 9}, {"bright-green", 10}, {"bright-yellow", 11}, {"bright-blue", 12},
    {"bright-magenta", 13}, {"bright-cyan", 14}, {"bright-white", 15},
};

/* RGB of the xterm palette entry i (standard 16, 6x6x6 cube, 24 greys). */
static void xterm_rgb(int i, int *r, int *g, int *b) {
    static const unsigned char base[16][3] = {
        {0, 0, 0}, {205, 0, 0}, {0, 205, 0}, {205, 205, 0}, {0, 0, 238}, {205, 0, 205},
        {0, 205, 205}, {229, 229, 229}, {127, 127, 127}, {255, 0, 0}, {0, 255, 0},
        {255, 255, 0}, {92, 92, 255}, {255, 0, 255}, {0, 255, 255}, {255, 255, 255}};
    if (i < 16) {
        *r = base[i][0]; *g = base[i][1]; *b = base[i][2];
    } else if (i < 232) {
        static const int lv[6] = {0, 95, 135, 175, 215, 255};
        i -= 16;
        *r = lv[i / 36]; *g = lv[(i / 6) % 6]; *b = lv[i % 6];
    } else {
        *r = *g = *b = 8 + (i - 232) * 10;
    }
}

static int nearest(int r, int g, int b, int lo, int hi) {
    int best = lo;
    long best_d = -1;
    for (int i = lo; i < hi; i++) {
        int pr, pg, pb;
        xterm_rgb(i, &pr, &pg, &pb);
        /* weighted distance: the eye is most sensitive to green */
        long d = 2L * (pr - r) * (pr - r) + 4L * (pg - g) * (pg - g) + 3L * (pb - b) * (pb - b);
        if (best_d < 0 || d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

int mx_colour_reduce(const struct mx_colour *c, int n_colours) {
    if (c->kind == MX_COLOUR_DEFAULT || n_colours < 8)
        return -1;
    int r, g, b;
    if (c->kind == MX_COLOUR_INDEX) {
        if (c->index < n_colours)
            return c->index;
        xterm_rgb(c->index, &r, &g, &b);
    } else {
        r = c->r; g = c->g; b = c->b;
    }
    if (n_colours >= 256)
        return nearest(r, g, b, 16, 256); /* cube and greys: stable across terminal palettes */
    /* With 8 or 16 colours a grey written as #rrggbb becomes the terminal's default: mapping it
     * to black or white would vanish on one of the two background kinds people use. Chromatic
     * colours go to the nearest of the six (twelve) chromatic entries for the same reason. */
    if (c->kind == MX_COLOUR_RGB) {
        int mx = MX_MAX(r, MX_MAX(g, b)), mn = MX_MIN(r, MX_MIN(g, b));
        if (mx - mn < 48)
            return -1;
        int best = nearest(r, g, b, 1, 7);
        if (n_colours >= 16) {
            int bright = nearest(r, g, b, 9, 15);
            int br, bg, bb, nr, ng, nb;
            xterm_rgb(bright, &br, &bg, &bb);
            xterm_rgb(best, &nr, &ng, &nb);
            long db = (long)(br - r) * (br - r) + (long)(bg - g) * (bg - g) + (long)(bb - b) * (bb - b);
            long dn = (long)(nr - r) * (nr - r) + (long)(ng - g) * (ng - g) + (long)(nb - b) * (nb - b);
            if (db < dn)
                best = bright;
        }
        return best;
    }
    return nearest(r, g, b, 0, n_colours >= 16 ? 16 : 8);
}

static void set_rgb(struct mx_colour *c, unsigned v) {
    c->kind = MX_COLOUR_RGB;
    c->r = (unsigned char)(v >> 16);
    c->g = (unsigned char)(v >> 8);
    c->b = (unsigned char)v;
}

static void set_idx(struct mx_colour *c, int i) {
    c->kind = MX_COLOUR_INDEX;
    c->index = i;
}

void mx_theme_default(struct mx_theme *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "dark");
    struct mx_theme_style *s = t->style;
    set_rgb(&s[MX_ROLE_user].fg, 0x87afff);
    s[MX_ROLE_user].attrs = MX_ATTR_BOLD;
    set_rgb(&s[MX_ROLE_system].fg, 0xafaf87);
    set_rgb(&s[MX_ROLE_code].fg, 0xffd787);
    set_rgb(&s[MX_ROLE_code].bg, 0x262626);
    set_rgb(&s[MX_ROLE_keyword].fg, 0xff87af);
    set_rgb(&s[MX_ROLE_keyword].bg, 0x262626);
    s[MX_ROLE_keyword].attrs = MX_ATTR_BOLD;
    set_rgb(&s[MX_ROLE_heading].fg, 0x87d7ff);
    s[MX_ROLE_heading].attrs = MX_ATTR_BOLD;
    set_rgb(&s[MX_ROLE_quote].fg, 0x8a8a8a);
    s[MX_ROLE_quote].attrs = MX_ATTR_ITALIC;
    set_rgb(&s[MX_ROLE_border].fg, 0x4e4e4e);
    set_rgb(&s[MX_ROLE_status].fg, 0xd0d0d0);
    set_rgb(&s[MX_ROLE_status].bg, 0x303030);
    s[MX_ROLE_selection].attrs = MX_ATTR_REVERSE;
    set_idx(&s[MX_ROLE_error].fg, 9);
    s[MX_ROLE_error].attrs = MX_ATTR_BOLD;
    set_idx(&s[MX_ROLE_warning].fg, 11);
    set_rgb(&s[MX_ROLE_muted].fg, 0x808080);
}

static int parse_colour(const char *w, struct mx_colour *c) {
    if (!strcasecmp(w, "default") || !strcmp(w, "-")) {
        c->kind = MX_COLOUR_DEFAULT;
        return 0;
    }
    if (w[0] == '#') {
        if (strlen(w) != 7)
            return -1;
        for (int i = 1; i < 7; i++)
            if (!isxdigit((unsigned char)w[i]))
                return -1;
        set_rgb(c, (unsigned)strtoul(w + 1, NULL, 16));
        return 0;
    }
    if (isdigit((unsigned char)w[0])) {
        char *end;
        long v = strtol(w, &end, 10);
        if (*end || v < 0 || v > 255)
            return -1;
        set_idx(c, (int)v);
        return 0;
    }
    for (size_t i = 0; i < sizeof basic_names / sizeof basic_names[0]; i++)
        if (!strcasecmp(w, basic_names[i].name)) {
            set_idx(c, basic_names[i].index);
            return 0;
        }
    return -1;
}

static int parse_attr(const char *w, unsigned *attrs) {
    static const struct { const char *n; unsigned a; } names[] = {
        {"bold", MX_ATTR_BOLD}, {"dim", MX_ATTR_DIM}, {"italic", MX_ATTR_ITALIC},
        {"underline", MX_ATTR_UNDERLINE}, {"reverse", MX_ATTR_REVERSE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(w, names[i].n)) {
            *attrs |= names[i].a;
            return 0;
        }
    return -1;
}

/* Cuts a comment: '#' at the start of the line, or a word "#" followed by a blank ("# note").
 * Any other '#' belongs to a value (#rrggbb), so a mistyped colour is an error, not a comment. */
static void strip_comment(char *line) {
    for (char *h = strchr(line, '#'); h; h = strchr(h + 1, '#')) {
        bool word_start = h == line || isspace((unsigned char)h[-1]);
        bool line_start = strspn(line, " \t") == (size_t)(h - line);
        if (line_start || (word_start && (h[1] == '\0' || isspace((unsigned char)h[1])))) {
            *h = '\0';
            return;
        }
    }
}

int mx_theme_parse(const char *text, size_t len, const char *file, struct mx_theme *t,
                   struct mx_err *err) {
    mx_theme_default(t);
    struct mx_theme out = *t;
    int lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        char line[512];
        size_t n = end - pos;
        lineno++;
        if (n >= sizeof line)
            return mx_err_set(err, MX_EFORMAT, "%s:%d: line too long", file, lineno);
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = end + 1;
        for (size_t i = 0; i < n; i++)
            if (line[i] == '\0' || (unsigned char)line[i] < 0x09)
                return mx_err_set(err, MX_EFORMAT, "%s:%d: binary data", file, lineno);
        strip_comment(line);
        char *eq = strchr(line, '=');
        char *key = strtok(line, " \t\r=");
        if (!key)
            continue;
        if (!eq)
            return mx_err_set(err, MX_EFORMAT, "%s:%d: expected 'role = colours'", file, lineno);
        if (!strcmp(key, "name")) {
            char *v = strtok(eq + 1, " \t\r");
            if (v)
                snprintf(out.name, sizeof out.name, "%s", v);
            continue;
        }
        int role = -1;
        for (int r = 0; r < MX_ROLE_COUNT; r++)
            if (!strcmp(key, role_names[r]))
                role = r;
        if (role < 0)
            return mx_err_set(err, MX_EFORMAT, "%s:%d: unknown role '%s'", file, lineno, key);
        struct mx_theme_style st = {0};
        int n_col = 0;
        for (char *w = strtok(eq + 1, " \t\r"); w; w = strtok(NULL, " \t\r")) {
            struct mx_colour c;
            if (n_col < 2 && parse_colour(w, &c) == 0) {
                if (n_col++ == 0)
                    st.fg = c;
                else
                    st.bg = c;
            } else if (parse_attr(w, &st.attrs) != 0) {
                return mx_err_set(err, MX_EFORMAT, "%s:%d: '%s' is not a colour or attribute",
                                  file, lineno, w);
            }
        }
        out.style[role] = st;
    }
    *t = out;
    return 0;
}

int mx_theme_load(const char *name, struct mx_theme *t, struct mx_err *err) {
    mx_theme_default(t);
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
            return mx_err_set(err, MX_EINVAL, "theme name '%s': use letters, digits, - and _",
                              name);
    char path[4200], cfg[4096];
    FILE *f = NULL;
    if (mx_path_config_dir(cfg, sizeof cfg, NULL) == 0) {
        snprintf(path, sizeof path, "%s/themes/%s.theme", cfg, name);
        f = fopen(path, "r");
    }
    if (!f) {
        for (const struct mx_theme_text *b = mx_builtin_themes; b->name; b++)
            if (!strcmp(b->name, name)) {
                snprintf(path, sizeof path, "(built-in) %s.theme", name);
                return mx_theme_parse(b->text, strlen(b->text), path, t, err);
            }
    }
    if (!f) /* short: it shows in the status line; `/theme` alone lists the names */
        return mx_err_set(err, MX_ENOENT, "theme '%s' not found", name);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    int too_big = !feof(f);
    fclose(f);
    if (too_big)
        return mx_err_set(err, MX_EFORMAT, "%s: larger than 64 KiB", path);
    return mx_theme_parse(buf, n, path, t, err);
}
