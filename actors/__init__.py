"""Ray actors. Each actor kind keeps its state in a pure object (no Ray import) and a thin
@ray.remote shell that loads, delegates and persists."""
