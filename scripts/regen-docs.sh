#!/bin/sh
# Regenerate what is generated from the code: the recipe JSON Schema and the
# README's recipe reference. `cargo test` fails (tests/schema.rs) when either
# is stale.
set -e
cd "$(dirname "$0")/.."
cargo run -q -- schema > pipe-recipe.schema.json
ref=$(mktemp)
cargo run -q -- explain --markdown > "$ref"
awk -v ref="$ref" '
/<!-- reference:start -->/ { print; while ((getline line < ref) > 0) print line; skip = 1; next }
/<!-- reference:end -->/ { skip = 0 }
!skip { print }
' README.md > README.md.tmp
mv README.md.tmp README.md
rm -f "$ref"
