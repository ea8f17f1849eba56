"""Region-level active learning: pool images cut into superpixels or patches, labelled region by region.

* :mod:`segal.regions.maps` — :class:`~segal.regions.maps.RegionSpec` and the region map of one image;
* :mod:`segal.regions.cache` — every pool image's map computed once, memory-mapped, with global ids;
* :mod:`segal.regions.costs` — what labelling regions costs: clicks (Cai et al., CVPR 2021) and pixels;
* :mod:`segal.regions.labels` — the simulated oracles: precise and dominant region labels, and the
  label noise of dominant labelling;
* the region-level pool state and budgets live in their own modules beside these.

The package imports nothing of it here, so that each module loads only what it needs.
"""
