#!/usr/bin/env bash
# Install the offline datasets the workbook reads (run by `make data`). Never fails the build.
#   dataset-fashion-mnist  → /usr/share/datasets/fashion-mnist/*.gz   (tasks smnist, psmnist)
#   bible-kjv              → the `bible` program                      (task kjv)
# Full-scale data (CIFAR-10, the LRA release, aclImdb, WikiText-103) is never downloaded: see lconv/data/*.py for
# where to put it ($LCONV_DATA, default ~/.cache/lconv).
set -u

have_fashion() { [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; }
have_bible() { command -v bible >/dev/null 2>&1; }

missing=()
have_fashion || missing+=(dataset-fashion-mnist)
have_bible || missing+=(bible-kjv)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-data: dataset-fashion-mnist and bible-kjv are installed."
    exit 0
fi

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "install-data: installing ${missing[*]} with apt-get ..."
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        echo "install-data: done."
        exit 0
    fi
    echo "install-data: apt-get could not install ${missing[*]} (offline?)." >&2
fi

cat >&2 <<MSG
install-data: missing ${missing[*]}. Install them yourself:
    sudo apt-get install ${missing[*]}          (Debian/Ubuntu)
or provide the files by hand:
  - Fashion-MNIST: put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
    t10k-labels-idx1-ubyte.gz (https://github.com/zalandoresearch/fashion-mnist) in a folder and set
    LCONV_FASHION_MNIST=/that/folder
  - KJV: put the text, one verse per line without references, in \$LCONV_DATA/kjv/kjv.txt and the book index in
    \$LCONV_DATA/kjv/books.tsv (lines 'book<TAB>n_verses'; LCONV_DATA defaults to ~/.cache/lconv)
The tasks that need them raise FileNotFoundError until then; every other task works.
MSG
exit 0
