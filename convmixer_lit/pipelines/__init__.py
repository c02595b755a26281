"""The two input pipelines (`--data.pipeline`), each handed a source's split scans (ImageFolders) by the data module
and returning the datasets its loaders read:

- `standard.py`: DataLoader workers decode and augment every image, with torchvision's transforms.
- `fast.py`: every image decoded once into a uint8 cache (`fastdata`), whole batches augmented on the device.

Both expose `prepare(name, scan, indices)` (make what must exist before training: the fast caches),
`train_set(scan, kept, ranks_on_node)` and `eval_set(name, scan, indices, ranks_on_node)`; `kept` and `indices`
select images of the scan (a held-out part of train), None takes all of it. Either way the batches reach the device as
uint8 and the data module normalises them there.
"""
