#!/bin/sh
# tui_daily.sh - the smaller daily-use items of issue 15 (item 13), each as the user meets it:
# an answer cut by a full context shows and is stored as cut (not complete); a message of several
# lines is one input-history entry, also after a restart; /export writes a 0600 file and refuses
# an empty chat; /copy copies the whole last answer and /copy code N a code block (OSC 52, read
# back from tmux's clipboard); /help lists /image and /img2img; high-contrast fills the
# screen with its background; transparent PNG areas show the background; /save converts a JPEG
# for a .png name; the "No model is loaded" banner goes away once a model is loaded.
set -u
umask 022 # mixel inherits it: the 0600 below is its own doing
. "$MX_SRCDIR/tests/tui_lib.sh"

# 1. a full context cuts the answer: marked on screen, stored as partial with the reason, and
#    still marked after --resume (the scripted engine's pieces stand for tokens with -c)
start echo 0 -c 12
$T send-keys -t t "please repeat this rather long sentence back to me in full" Enter
wait_for "[cut: the context is full]" || fail "a cut answer is not marked on screen"
wait_for "the context is full: the answer was cut short" || fail "no notice for a cut answer"
"$MIXEL" sessions export 1 --format json --db "$work/h.db" > "$work/cut.json" || fail "export"
grep -q '"state": *"partial"' "$work/cut.json" || fail "a cut answer is stored as complete"
grep -q '"stop": *"context_full"' "$work/cut.json" || fail "the stored answer lacks the reason"
quit
start echo 0 --resume
wait_for "[cut: the context is full]" || fail "cut answer not marked after --resume"

# 2. a message of several lines (Alt-Enter) is one history entry, after a restart too
$T send-keys -t t "first of two" M-Enter "second of two" Enter
wait_for "You said: first of two" || fail "two-line message not sent"
quit
start echo
$T send-keys -t t Up Up # past "/quit"
wait_for "second of two" || fail "Up did not bring the message back"
$T capture-pane -p -t t | grep -q "› first of two" ||
    fail "the lines of one message are separate history entries"
$T send-keys -t t C-c

# 3. /export: an empty chat is refused (no file); a chat is written 0600
$T send-keys -t t "/new" Enter
$T send-keys -t t "/export $work/empty.md" Enter
wait_for "the conversation is empty: nothing to export" || fail "empty /export not refused"
[ -e "$work/empty.md" ] && fail "empty /export wrote a file"
$T send-keys -t t "hello export" Enter
wait_for "You said: hello export" || fail "answer"
$T send-keys -t t "/export $work/chat.md" Enter
wait_for "exported to" || fail "/export"
[ "$(stat -c %a "$work/chat.md")" = 600 ] || fail "/export wrote mode $(stat -c %a "$work/chat.md")"
quit

# 4. /copy: the whole last answer; /copy code 2 the second code block (tmux takes OSC 52 into
#    its paste buffer with set-clipboard on)
printf 'Two blocks:\n\n```\nfirst block\n```\n\nand\n\n```sh\necho second\n```\n\nend.' \
    > "$work/code.txt"
start "$work/code.txt"
$T set-option -g set-clipboard on
$T send-keys -t t "code please" Enter
wait_for "end." || fail "answer with code not shown"
$T send-keys -t t "/copy" Enter
wait_for "copied the last answer" || fail "/copy did not copy the answer"
sleep 0.2
$T show-buffer | grep -q "^Two blocks:" || fail "/copy did not copy the whole answer"
$T show-buffer | grep -q "^end.$" || fail "/copy lost the answer's end"
$T send-keys -t t "/copy code 2" Enter
wait_for "copied code block 2 of 2" || fail "/copy code 2"
sleep 0.2
[ "$($T show-buffer)" = "echo second" ] || fail "/copy code 2 copied: $($T show-buffer)"
$T send-keys -t t "/copy code 3" Enter
wait_for "has 2 code blocks" || fail "/copy code 3 not refused"

# 5. /help lists /image with its options and /img2img (tests/tui_image_gen.sh runs them)
$T resize-window -t t -x 120 -y 70 # /help whole on the screen
$T send-keys -t t "/help" Enter
wait_for "/image PROMPT [opts]" || fail "/help does not list /image"
wait_for "-n NEG -W/-H --steps --cfg" || fail "/help does not list /image's options"
wait_for "/img2img PROMPT [opts]" || fail "/help does not list /img2img"
quit

# 6. high-contrast on a terminal of another background: no cell is left on the terminal's own
#    background (it painted black boxes behind the text on a white terminal). TERM without bce,
#    so that ncurses writes every cell and tmux can show what each one holds.
cat > "$work/bgcheck.py" <<'PY'
import re, sys
# reads `tmux capture-pane -p -e -N` and the pane width; prints rows with cells on the
# terminal's default background (a cell never drawn, or drawn with SGR 49 / 0)
width = int(sys.argv[1])
bg = None
bad = []
for y, line in enumerate(sys.stdin.read().split('\n')[:-1]):
    cells = 0; default = 0
    for m in re.finditer(r'\x1b\[([0-9;:]*)m|(.)', line):
        if m.group(1) is not None:
            p = [int(x) if x else 0 for x in re.split('[;:]', m.group(1))] or [0]
            i = 0
            while i < len(p):
                c = p[i]
                if c == 0 or c == 49: bg = None
                elif 40 <= c <= 47 or 100 <= c <= 107: bg = c
                elif c == 48:
                    k = 3 if p[i + 1] == 5 else 5
                    bg = tuple(p[i:i + k]); i += k - 1
                elif c == 38: i += 2 if p[i + 1] == 5 else 4
                i += 1
        else:
            cells += 1
            default += bg is None
    default += max(0, width - cells)
    if default:
        bad.append("row %d: %d cells on the default background" % (y, default))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
TUI_TERM=tmux-256color start echo 0 --theme high-contrast
$T send-keys -t t "hi" Enter
wait_for "You said: hi" || fail "high-contrast answer"
sleep 0.2
$T capture-pane -p -e -N -t t | python3 "$work/bgcheck.py" 80 ||
    fail "high-contrast leaves cells on the terminal's background"
TUI_TERM=
quit

# 7. transparent PNG pixels go over the background (the theme's own here, else the terminal's
#    from OSC 11), not black: half blocks of a left-transparent, right-blue image on "paper"
cat > "$work/mkpng.py" <<'PY'
import struct, zlib, sys
# 16x8 RGBA: left half transparent (colour red underneath), right half opaque blue
W, H = 16, 8
raw = b''.join(b'\0' + b''.join(bytes((255, 0, 0, 0)) if x < W // 2 else bytes((0, 0, 255, 255))
                                 for x in range(W)) for y in range(H))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, 8, 6, 0, 0, 0)) + \
      chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
PY
python3 "$work/mkpng.py" "$work/half.png"
mkdir -p "$work/cfg/mixel/themes"
printf 'name = paper\nnormal = #000000 #ffffff\n' > "$work/cfg/mixel/themes/paper.theme"
TUI_ENV="MIXEL_GRAPHICS=blocks" start echo 0 --theme paper
$T send-keys -t t "/show $work/half.png" Enter
wait_for "image attached" || fail "/show of a transparent PNG"
sleep 0.2
# the image's rows: each starts with its left (transparent) half
rows=$($T capture-pane -p -e -t t | grep "$(printf '\342\226\200')")
[ -n "$rows" ] || fail "no half-block image on the screen"
echo "$rows" | grep -q "48;5;231m" || fail "transparent pixels are not on the white background"
echo "$rows" | grep -qE "48;5;(16|196)m" && fail "transparent pixels show black or their hidden red"
TUI_ENV=
quit

# 8. /save x.png of a JPEG writes a PNG (converted), never JPEG bytes under .png; /save y.jpg of
#    a PNG keeps it a PNG, named y.png
start echo
$T send-keys -t t "/show $MX_SRCDIR/tests/data/quadrants.jpg" Enter
wait_for "image attached" || fail "/show of a JPEG"
$T send-keys -t t "/save $work/out.png" Enter
wait_for "saved $work/out.png" || fail "/save of a JPEG as .png"
[ "$(od -An -tx1 -N4 "$work/out.png" | tr -d ' ')" = 89504e47 ] ||
    fail "/save wrote $(od -An -tx1 -N4 "$work/out.png") under a .png name"
"$MIXEL" show --graphics none "$work/out.png" >/dev/null 2>&1 ||
    fail "the converted PNG is unreadable"
quit
start echo
$T send-keys -t t "/show $MX_SRCDIR/tests/data/quadrants.png" Enter
wait_for "image attached" || fail "/show of a PNG"
$T send-keys -t t "/save $work/y.jpg" Enter
wait_for "saved $work/y.png" || fail "/save of a PNG as .jpg did not keep it a PNG"
[ -e "$work/y.jpg" ] && fail "/save wrote PNG bytes under a .jpg name"
[ "$(od -An -tx1 -N4 "$work/y.png" | tr -d ' ')" = 89504e47 ] || fail "y.png is no PNG"
quit

# 9. the "No model is loaded" banner goes once a model is loaded
[ -f "${MX_SHARED:-}/models/stories260K.gguf" ] ||
    { echo "daily ok (model part skipped: no ../shared/models)"; exit 0; }
start ""
# no model anywhere: the first-run screen (tests/pull_firstrun.sh) comes first; Esc closes it
wait_for "no model was found on this machine" || fail "no first-run screen without a model"
$T send-keys -t t Escape
wait_for "No model is loaded" || fail "no banner without a model"
$T send-keys -t t "/model $MX_SHARED/models/stories260K.gguf" Enter
wait_for "loaded stories260K" 20 || fail "/model did not load"
$T capture-pane -p -t t | grep -q "No model is loaded" && fail "the banner stays after loading"
quit
echo "daily ok"
