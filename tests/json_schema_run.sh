#!/bin/sh
# json_schema_run.sh - `mixel run --json-schema FILE` and `--json` end to end with an untrained
# model (tiny-mixtral-f32, temperature 1, several seeds): for schemas with nesting, enums, arrays
# with bounds, integer and number bounds, formats and a pattern, anyOf/allOf and a recursive $ref,
# every answer ends by itself and validates (Python's jsonschema, formats checked); --json gives
# one JSON object; a refused schema names the keyword and its pointer (exit 1); --grammar,
# --json-schema and --json together are a usage error (exit 2); bench --json-schema reports the
# grammar's cost.
set -u
fail() { echo "FAIL: $*"; exit 1; }
if [ ! -d "${MX_SHARED:-}/models" ]; then
    echo "SKIP: json_schema_run.sh needs ../shared (set MX_SHARED); it is absent here"
    exit 77
fi
python3 -c 'import jsonschema' 2>/dev/null \
    || { echo "SKIP: json_schema_run.sh needs python3 with jsonschema (python3-jsonschema)"; exit 77; }
M="$MX_SHARED/models/tiny-mixtral-f32.gguf"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cat >"$T/nested.json" <<'J'
{"type": "object", "additionalProperties": false, "required": ["user", "ok"],
 "properties": {
   "user": {"type": "object", "additionalProperties": false, "required": ["id", "tags"],
            "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999},
                           "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                                    "minItems": 1, "maxItems": 3},
                           "nick": {"type": "string", "minLength": 1, "maxLength": 6}}},
   "ok": {"type": "boolean"}}}
J
cat >"$T/enums.json" <<'J'
{"type": "array", "minItems": 1, "maxItems": 3,
 "items": {"enum": ["red", "green", 42, null, {"k": [1, 2.5]}]}}
J
cat >"$T/bounds.json" <<'J'
{"type": "object", "required": ["a", "b", "c", "xs"],
 "properties": {"a": {"type": "integer", "exclusiveMinimum": -50, "maximum": -7},
                "b": {"type": "integer", "minimum": 1000, "maximum": 123456},
                "c": {"type": "number", "minimum": -1, "exclusiveMaximum": 2},
                "xs": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                       "minItems": 2, "maxItems": 4}}}
J
cat >"$T/formats.json" <<'J'
{"type": "array", "items": false,
 "prefixItems": [{"type": "string", "format": "date"}, {"type": "string", "format": "time"},
                 {"type": "string", "format": "date-time"}, {"type": "string", "format": "uuid"},
                 {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}(x|yz)?$"}]}
J
cat >"$T/ref.json" <<'J'
{"$ref": "#/$defs/node",
 "$defs": {"node": {"type": "object", "additionalProperties": false, "required": ["v"],
                    "properties": {"v": {"type": "string", "maxLength": 4},
                                   "kids": {"type": "array", "maxItems": 2,
                                            "items": {"$ref": "#/$defs/node"}}}}}}
J
cat >"$T/union.json" <<'J'
{"anyOf": [{"type": "object", "required": ["kind", "n"], "additionalProperties": false,
            "properties": {"kind": {"const": "int"}, "n": {"type": "integer", "minimum": 0,
                                                           "maximum": 9}}},
           {"allOf": [{"type": "object", "required": ["kind"],
                       "properties": {"kind": {"const": "str"}}},
                      {"properties": {"s": {"type": "string", "maxLength": 3}},
                       "required": ["s"]}]},
           {"type": "null"}]}
J
validate() { # schema file, answer file
    python3 - "$1" "$2" <<'P'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
text = open(sys.argv[2], encoding="utf-8").read()
try:
    v = json.loads(text)
except ValueError as e:
    sys.exit("not JSON (%s): %r" % (e, text))
cls = jsonschema.validators.validator_for(schema)
errs = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(v))
if errs:
    sys.exit("does not validate (%s): %r" % (errs[0].message, text))
P
}
run() { # schema seed -> $T/out, $T/err
    "$MIXEL" run -m "$M" -p "Answer:" --json-schema "$T/$1.json" --temp 1 --seed "$2" -n 1500 \
        >"$T/out" 2>"$T/err" || fail "$1 seed $2: exit $?: $(cat "$T/err")"
}
n=0
for schema in nested enums bounds formats ref union; do
    for s in 1 2 3 4; do
        run $schema $s
        grep -q 'stopped: end of text' "$T/err" \
            || fail "$schema seed $s did not end: $(cat "$T/err") $(cat "$T/out")"
        msg=$(validate "$T/$schema.json" "$T/out" 2>&1) || fail "$schema seed $s: $msg"
        n=$((n + 1))
    done
done
grep -q 'grammar: .* us per token' "$T/err" || fail "no grammar cost line: $(cat "$T/err")"
# --json: one JSON object
for s in 1 2 3; do
    "$MIXEL" run -m "$M" -p "Answer:" --json --temp 1 --seed $s -n 400 >"$T/out" 2>"$T/err" \
        || fail "--json seed $s: $(cat "$T/err")"
    if grep -q 'stopped: end of text' "$T/err"; then
        python3 -c 'import json, sys
sys.exit(0 if isinstance(json.load(open(sys.argv[1], encoding="utf-8")), dict) else 1)' \
            "$T/out" || fail "--json seed $s: not an object: $(cat "$T/out")"
    else
        head -c 1 "$T/out" | grep -q '{' || fail "--json seed $s: $(cat "$T/out")"
    fi
done
# a refused schema names the keyword and where it is; exit 1
printf '{"type":"object","properties":{"a":{"not":{"type":"null"}}}}' >"$T/bad.json"
"$MIXEL" run -m "$M" -p x --json-schema "$T/bad.json" >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "refused schema: exit code"
grep -q "bad.json: json schema: 'not' at /properties/a is not supported" "$T/err" \
    || fail "refused schema: $(cat "$T/err")"
printf '{"type": "string",' >"$T/broken.json"
"$MIXEL" run -m "$M" -p x --json-schema "$T/broken.json" >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "broken schema: exit code"
grep -q 'broken.json: json schema: not JSON' "$T/err" || fail "broken schema: $(cat "$T/err")"
"$MIXEL" run -m "$M" -p x --json-schema "$T/none.json" >/dev/null 2>"$T/err"
[ $? -eq 1 ] || fail "missing schema: exit code"
# the three ways of constraining exclude each other (usage: exit 2)
"$MIXEL" run -m "$M" -p x --json --json-schema "$T/ref.json" >/dev/null 2>"$T/err"
[ $? -eq 2 ] || fail "--json with --json-schema: exit code"
grep -q 'exclude each other' "$T/err" || fail "--json with --json-schema: $(cat "$T/err")"
"$MIXEL" chat -m "$M" --grammar "$T/ref.json" --json >/dev/null 2>"$T/err" </dev/null
[ $? -eq 2 ] || fail "chat --grammar with --json: exit code"
grep -q 'exclude each other' "$T/err" || fail "chat --grammar with --json: $(cat "$T/err")"
"$MIXEL" run --help | grep -q -- '--json-schema FILE' || fail "run --help lacks --json-schema"
# mixel bench --json-schema: the grammar's cost per token
"$MIXEL" bench -m "$M" -p 0 -n 32 -r 1 --mem-mib 16 --json-schema "$T/nested.json" >"$T/out" \
    2>"$T/err" || fail "bench --json-schema: $(cat "$T/err")"
grep -Eq '^grammar +[0-9.]+ us per token, [0-9.]+ % of a [0-9.]+ ms step' "$T/out" \
    || fail "bench --json-schema: $(cat "$T/out")"
echo "PASS: json_schema_run.sh ($n answers validated)"
