#!/usr/bin/env bash
# Debian packages the HTML book and its browser test need, installed when missing (called by `make book` and the
# browser test's make target): chromium (headless, for tests/test_book.py), libjs-mathjax + fonts-mathjax (the book
# serves MathJax from its own folder: no CDN at view time). Needs root or sudo and Debian's package lists; without
# them it says what to install and exits 1.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/javascript/mathjax/MathJax.js ] || need+=(libjs-mathjax)
[ -d /usr/share/fonts/truetype/mathjax ] || [ -d /usr/share/javascript/mathjax/fonts/HTML-CSS/TeX/woff ] || need+=(fonts-mathjax)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "env/install-browser.sh: missing Debian packages ${need[*]} and no root: install them (apt-get install ${need[*]})" >&2
    exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
