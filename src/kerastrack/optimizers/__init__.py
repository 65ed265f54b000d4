"""What kerastrack adds to Keras' optimizers: learning-rate schedules given in epochs
(``schedules``)."""
