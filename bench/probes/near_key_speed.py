"""near_key (inspect's duplicate key) by regex only against the str.translate path for ASCII texts, on IMDb's
50,000 reviews, in one process: `OMP_NUM_THREADS=1 python bench/probes/near_key_speed.py ../shared/data/imdb`."""

import re
import sys
import time

from ulmfit_cli.data.readers import Source, read_texts
from ulmfit_cli.workflows.inspect_data import near_key

PUNCT = re.compile(r"[^\w\s]|_")


def regex_key(text: str) -> str:
    return " ".join(PUNCT.sub(" ", text.lower()).split())


texts = [t for name in ("train.csv", "test.csv") for t in read_texts(Source(path=f"{sys.argv[1]}/{name}")).texts]
for fn in (regex_key, near_key, regex_key, near_key):
    t0 = time.process_time()
    keys = [fn(t) for t in texts]
    print(f"{fn.__name__}: {time.process_time() - t0:.2f} s CPU for {len(texts)} texts")
assert keys == [regex_key(t) for t in texts]
