import { describeLedgerModel } from '../support/ledger-model.ts';

// The rollout ledger's model-based test with every change staged (a canary, then the rest):
// halts, rollbacks, pins and newer changes ending older stagings, under the same interleavings.
describeLedgerModel(20261130, 200, { staged: true });
