"""An ordinary tqdm loop, written with no thought of scriptrun."""

import time

from tqdm import tqdm

for _ in tqdm(range(8), desc="crunching", mininterval=0):
    time.sleep(0.25)
print("done")
