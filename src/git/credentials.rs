//! Credentials for a remote, read from a Secret's data (native, Flux- and Argo CD-shaped):
//! an SSH private key with `known_hosts`, or a username with a password or token.
