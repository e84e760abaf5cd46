import { describeLedgerModel } from '../support/ledger-model.ts';

// The rollout ledger's model-based test, seed 20261129: half of the 1,000 CI scenarios (the other
// half is model-ledger-b.test.ts, so the two run on two cores).
describeLedgerModel(20261129, 500);
