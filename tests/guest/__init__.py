"""QEMU guest machinery of the kernel test tier (imported as ``guest.*``)."""
