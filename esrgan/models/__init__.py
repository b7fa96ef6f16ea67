"""What the engine knows of models: specs, the registry and routes, the catalogue, weights, detection, conversion."""
