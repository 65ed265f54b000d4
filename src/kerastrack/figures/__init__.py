"""Every figure kerastrack draws: learning curves and confusion matrices (``curves``), and paths
on the optimizer lab's surfaces (``trajectories``)."""
