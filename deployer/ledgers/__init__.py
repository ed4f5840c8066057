"""Ledger back-ends beyond the embedded SQLite file (:mod:`deployer.ledger`).

* :mod:`deployer.ledgers.objects`: the shared ledger on any conditional-write object store;
* :mod:`deployer.ledgers.files`: the ``file://`` object store (a directory, local or NFS);
* :mod:`deployer.ledgers.lease`: the endpoint lock as a lease, used by both ledgers;
* :mod:`deployer.ledgers.select`: which ledger ``--state`` / ``DEPLOYER_STATE`` / ``spec.state`` names;
* :mod:`deployer.ledgers.transfer`: ``ledger push`` / ``pull`` and the audit export.

Cloud stores (``s3``, ``gs``, ``az``) live in their provider packages, registered under the
``deployer.ledgers`` entry point group.
"""
