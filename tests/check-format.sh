#!/usr/bin/env bash
# Fails when a C source or header differs from what clang-format (with the
# repo's .clang-format) would write. Prints the files that need formatting.
set -uo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp')
bad=()
for f in "${files[@]}"; do
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		bad+=("$f")
	fi
done
if [ "${#bad[@]}" -gt 0 ]; then
	echo "not formatted (run: clang-format -i FILE): ${bad[*]}"
	exit 1
fi
echo "all ${#files[@]} C files formatted"
