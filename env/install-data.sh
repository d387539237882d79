#!/usr/bin/env bash
# Install the offline datasets from Debian packages (run by `make data`). Never fails the build: when it cannot
# install, it says what to install and where the files go, and the notebooks that need them say so too.
set -u
declare -A CHECK=(
  [dataset-fashion-mnist]=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
  [bible-kjv]=/usr/bin/bible
)
missing=()
for pkg in "${!CHECK[@]}"; do
  [ -e "${CHECK[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && { echo "data: Fashion-MNIST and KJV text are installed"; exit 0; }

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "data: installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "data: installed ${missing[*]}"
    exit 0
  fi
  echo "data: apt-get could not install ${missing[*]}" >&2
fi
cat >&2 <<MSG
data: missing ${missing[*]} and cannot install them here (needs apt-get as root).
  Install the Debian/Ubuntu packages yourself:   sudo apt-get install ${missing[*]}
  or place the files by hand: Fashion-MNIST's four *-ubyte.gz files in /usr/share/datasets/fashion-mnist/
  (or set LCONV_FASHION_MNIST=<dir>), and the 'bible' program from bible-kjv on PATH.
  Everything else (LRA-style tasks, scikit-learn digits) needs nothing installed; tests that need these skip.
MSG
exit 0
