import { describeLedgerModel } from '../support/ledger-model.ts';

// The rollout ledger's model-based test with every rollout of more than one target planned in
// parts of one chunk (shared/send/parts.ts): parts recorded and queued by the send workers,
// under the same interleavings, crashes and lost replies.
describeLedgerModel(20261201, 120, { parts: true });
