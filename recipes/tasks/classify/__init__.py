"""The classification task: 1-D series and 2-D images, standard vs weighted convolution.

The task itself (registration under the name ``classify``) lands in this package's
``task`` module; the data readers (``cifar``, ``series``) live beside it.
"""
