"""An ML platform split into feature, training and serving environments."""

import flyte

# A shared base environment defined in the package's __init__.
base = flyte.TaskEnvironment(name="ml_base", resources=flyte.Resources(cpu=1, memory="512Mi"))
