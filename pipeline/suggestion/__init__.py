"""This project's own Katib suggestion services (an extension Katib lacks): `asha`.
`asha` is the algorithm (pure), `service` the gRPC servicer, `server` the process."""
