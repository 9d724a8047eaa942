"""What a knowledge product is: contract models, the catalog, governance checks, access rules."""
