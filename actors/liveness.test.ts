// The failure detector's timeout rule and the owner lease, fed times by hand.
import test from 'ava';
import { FailureDetector, OwnerLease } from './liveness.ts';

const members = ['n1', 'n2', 'n3'];

test('a member silent for suspectMs is marked down, and up again once heard', (t) => {
  const detector = new FailureDetector('n1', 3000);
  detector.becameLeader(0);
  detector.heard('n2', 100);
  detector.heard('n3', 100);
  t.deepEqual(detector.decide(2999, members, new Set()), { markDown: [], markUp: [] });
  detector.heard('n2', 2900);
  // n3 was last heard at 100 ms: silent for 3000 ms at 3100.
  t.deepEqual(detector.decide(3100, members, new Set()), { markDown: ['n3'], markUp: [] });
  t.deepEqual(detector.decide(3200, members, new Set(['n3'])), { markDown: [], markUp: [] });
  detector.heard('n3', 5000);
  t.deepEqual(detector.decide(5001, members, new Set(['n3'])), { markDown: [], markUp: ['n3'] });
});

test('a new leader gives every member a full suspectMs, and never suspects itself', (t) => {
  const detector = new FailureDetector('n1', 3000);
  t.deepEqual(detector.decide(10_000, members, new Set()), { markDown: [], markUp: [] }, 'a follower decides nothing');
  detector.becameLeader(10_000);
  t.deepEqual(detector.decide(12_999, members, new Set()), { markDown: [], markUp: [] });
  t.deepEqual(detector.decide(13_000, members, new Set()), { markDown: ['n2', 'n3'], markUp: [] });
  t.deepEqual(detector.decide(13_000, members, new Set(['n1'])).markUp, ['n1']);
  detector.steppedDown();
  t.deepEqual(detector.decide(20_000, members, new Set()), { markDown: [], markUp: [] });
});

test('the lease: grace after boot, valid after contact, expired leaseMs after the last one', (t) => {
  const lease = new OwnerLease(1500, 1000);
  t.is(lease.state(1000), 'grace');
  t.is(lease.state(2499), 'grace');
  t.is(lease.state(2500), 'expired');
  lease.contact(2600);
  t.is(lease.state(2600), 'valid');
  t.is(lease.state(4099), 'valid');
  t.is(lease.state(4100), 'expired');
});
