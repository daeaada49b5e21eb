"""Ray actors. Each actor kind keeps its state in a pure object (no Ray import) and a thin
@ray.remote shell that loads, delegates and persists."""

# Every named actor lives in this Ray namespace, whoever creates or looks it up (the CLI's driver,
# a Serve replica, a simulator, a test), so a handle is found from any process of the cluster.
NAMESPACE = "flashmart"
