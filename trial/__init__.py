"""One Katib trial: load the Kaggle digit-recognizer CSV, build a Keras CNN
from hyperparameters given as flags, train, and print Katib metric lines."""
