/*
 * handover.pml: the two-phase migration handover and the block reactivation
 * gate of vmmd, for spin. README.md in this directory maps every process and
 * variable to the Go code; scripts/verify.sh runs every variant below.
 *
 * Source S and destination D share two drives on shared storage. S stops its
 * vCPUs, inactivates both drives (the gate marks "may be inactive" first),
 * sends the device state, waits for READY, sends COMMIT and ends in
 * postmigrate. Before COMMIT every failure makes S reactivate its drives and
 * resume through the gate; after COMMIT S never resumes on its own. D starts
 * only after COMMIT, through the gate. Faults at any step: the connection is
 * cut, storage fails or hangs (an inactivation or activation fails) and
 * comes back, migrate_cancel, D crashes, and the operator runs `cont` on
 * either side.
 *
 * Build switches (spin -D...); scripts/verify.sh requires the default,
 * NOLOCK and FRAME_ATOMIC to pass and each broken variant to violate the
 * property named:
 *   NOLOCK          storage enforces no exclusion (NBD: anyone may connect);
 *                   default: an image lock per drive (file backend, OFD
 *                   locks) that at most one process holds. Under NOLOCK the
 *                   operator follows the documented rule: `cont` on a
 *                   postmigrate source only when the destination is gone or
 *                   reports its incoming migration failed.
 *   FRAME_ATOMIC    the commit as source.go does it: committed only after
 *                   the COMMIT frame was flushed, a failed send fails the
 *                   migration. Passes because a frame whose send failed
 *                   never arrives whole; the default model does not assume
 *                   that and commits before sending.
 *   NO_ROLLBACK     ReactivateAll keeps the drives it activated even when
 *                   another stays inactive (pkg/block/gate.go today).
 *                   Violates recoverable.
 *   BUGGY_RESUME    S auto-resumes after a failed migration whatever the
 *                   gate says (QEMU before 2023). Violates s_gated.
 *   BUGGY_COMMIT    S treats a send error on COMMIT as a failure and
 *                   auto-resumes (the bytes may have arrived). Violates
 *                   no_auto_after_commit; under NOLOCK, one_holder.
 *   BUGGY_PAUSED_STOP  stopping a paused VM for migration leaves it in
 *                   `paused` (Pause is a no-op when not running) instead of
 *                   forcing finish-migrate, so `cont` slips in. Violates
 *                   s_gated.
 *   BUGGY_STOP_RACE source.go stopGuest as first written: reads the run
 *                   state, then Pause(finish-migrate) (no-op if a stop came
 *                   in between) or EnterState. Violates s_gated.
 *   BUGGY_DEST_CONT `cont` on a destination that never got COMMIT starts it
 *                   through the gate. Violates d_committed.
 *   BUGGY_FLAG      InactivateAll sets mayBeInactive after the drives
 *                   instead of before. Violates s_flag.
 *   UNINFORMED      under NOLOCK, the operator runs `cont` on a postmigrate
 *                   source without checking the destination. Violates
 *                   one_holder: the hazard the operator rule exists for.
 */

#define ND 2

/* run states (QEMU names) */
#define RUNNING   1
#define PAUSED    2
#define INMIG     3   /* inmigrate */
#define FINISH    4   /* finish-migrate */
#define POST      5   /* postmigrate */
#define DEAD      6   /* the process is gone */

mtype = { CONFIG, STATE, COMMIT, READY, ABORT };

chan s2d = [3] of { mtype };  /* S -> D: at most CONFIG, STATE, COMMIT */
chan d2s = [1] of { mtype };  /* D -> S: READY or ABORT */

/* environment */
bool cut;               /* connection broken: each end sees EOF/error next */
bool storage_up = true; /* down = flush/lock/connect fail or hang to timeout */
bool cancel;            /* migrate_cancel issued on S */
bool autostart;         /* D resumes on incoming done (cont on D in inmigrate sets it) */
bool faults_off;        /* recovery phase: no more faults, storage back */

/* source */
byte s_rs = RUNNING;
bool s_act[ND] = true;  /* drive active = image lock held (Drive.Active) */
bool s_mbi;             /* Gate.mayBeInactive */
bool s_mu;              /* Machine.mu: Resume, stop and fail exclude each other */
bool s_was_running;     /* run state when the migration stopped the vCPUs */
bool s_committed;       /* COMMIT about to be / being sent: no way back */
bool s_done;            /* migration thread finished */
bool s_autoresumed;     /* ghost: the migration thread restarted the vCPUs */

/* destination */
byte d_rs = INMIG;
bool d_act[ND];         /* opened inactive */
bool d_mbi = true;      /* Gate.Add of an inactive drive marks the gate */
bool d_committed;       /* COMMIT received */
bool d_failed;          /* incoming migration failed (query-migrate: failed) */
bool d_settled;         /* first Resume(incoming-done) attempt made */
bool d_quiet;           /* D's operator loop stopped (recovery phase) */

#define SRUN (s_rs == RUNNING)
#define DRUN (d_rs == RUNNING)
#define S_ALL (s_act[0] && s_act[1])
#define D_ALL (d_act[0] && d_act[1])

/* The invariant, checked in every reachable state by Monitor below. */
#define ONE_RUNS      (!(SRUN && DRUN))
#define S_GATED       (!SRUN || S_ALL)
#define D_GATED       (!DRUN || D_ALL)
#define ONE_HOLDER    (!(s_act[0] && d_act[0]) && !(s_act[1] && d_act[1]))
#define S_FLAG        (s_mbi || S_ALL)
#define D_FLAG        (d_mbi || D_ALL)
#define D_COMMITTED   (!DRUN || d_committed)
#define NO_AUTO_AFTER_COMMIT (!(s_committed && s_autoresumed))
/* Always false; they only name the property in spin's "assertion violated"
 * line, which scripts/verify.sh reads. */
hidden byte prop_one_runs, prop_s_gated, prop_d_gated, prop_one_holder, prop_s_flag,
	prop_d_flag, prop_d_committed, prop_no_auto_after_commit, prop_recoverable;

#define INVARIANT (ONE_RUNS && S_GATED && D_GATED && ONE_HOLDER && S_FLAG && D_FLAG \
	&& D_COMMITTED && NO_AUTO_AFTER_COMMIT)

#ifdef NOLOCK
#define FREE_FOR_S(i) true
#define FREE_FOR_D(i) true
#else
#define FREE_FOR_S(i) (!d_act[i])
#define FREE_FOR_D(i) (!s_act[i])
#endif

/* Drive.Activate on drive i: takes the image (lock / connection). Fails
 * while storage is down (or hangs until the timeout, which is the same) and,
 * with locks, while the other process holds the image. */
inline activate(act, free, took) {
	atomic {
		if
		:: act -> skip
		:: !act && storage_up && free -> act = true; took = true
		:: else -> skip
		fi
	}
}

/* Gate.ReactivateAll: tries every drive, clears mayBeInactive only when all
 * are active; without NO_ROLLBACK a failed call releases the drives it took
 * (so two processes racing for the images cannot each keep one). */
inline reactivate_all(act0, act1, mbi, free0, free1, ok) {
	activate(act0, free0, took0);
	activate(act1, free1, took1);
	atomic {
		ok = act0 && act1;
		if
		:: ok -> mbi = false
		:: else ->
#ifndef NO_ROLLBACK
			if :: took0 -> act0 = false :: else -> skip fi;
			if :: took1 -> act1 = false :: else -> skip fi;
#endif
			skip
		fi;
		took0 = false; took1 = false
	}
}

/* Drive.Inactivate on drive i: drain, flush, release. The flush may fail
 * (EIO), hang past the timeout, or be cut short by migrate_cancel at any
 * time; it can succeed only while storage is up. On failure the drive stays
 * active. Inactive drives: no-op. */
inline inactivate(act, err) {
	atomic {
		if
		:: !act -> skip
		:: act && storage_up -> act = false
		:: act -> err = true
		fi
	}
}

/* Send on the migration connection. A cut connection reports an error;
 * bytes written just before the error was seen may still reach the peer. */
inline send(ch, m, err) {
	atomic {
		if
		:: !cut -> ch!m
		:: cut -> err = true
		:: cut -> ch!m; err = true
		fi
	}
}

/* Machine.Resume on S (cause cont, or migration-failed/-cancelled from the
 * migration thread): refuses in finish-migrate, no-op when running, else
 * ReactivateAll and start the vCPUs only if every drive is active. Caller
 * holds s_mu. */
inline s_resume() {
	if
	:: s_rs == RUNNING || s_rs == FINISH -> skip
	:: else ->
		reactivate_all(s_act[0], s_act[1], s_mbi, FREE_FOR_S(0), FREE_FOR_S(1), ok);
		if :: ok -> s_rs = RUNNING :: else -> skip fi
	fi
}

/* Machine.Resume on D (incoming-done or cont), then EnterState(paused) if
 * the gate refused. Caller is D's process. */
inline d_resume() {
	reactivate_all(d_act[0], d_act[1], d_mbi, FREE_FOR_D(0), FREE_FOR_D(1), ok);
	if :: ok -> d_rs = RUNNING :: else -> d_rs = PAUSED fi
}

/* The operator's rule for `cont` on the source. With image locks the
 * storage refuses a second holder, so any cont is safe. Without them, a
 * postmigrate source may be continued only once the destination is gone or
 * reports failed (it then never runs). */
#if defined(NOLOCK) && !defined(UNINFORMED)
#define MAY_CONT_S (s_rs != POST || d_rs == DEAD || d_failed)
#else
#define MAY_CONT_S true
#endif

/* The migration thread of the source (source.go: runSource, complete, fail). */
active proctype Source() {
	bool err, ok, took0, took1, stopped;

	/* setup and RAM passes: the VM keeps its run state; cont is a no-op or
	 * starts a paused VM; cancel and a cut are noticed at the next step */
	send(s2d, CONFIG, err);
	if :: err || cancel -> goto fail :: else -> skip fi;

	/* stop the vCPUs: finish-migrate, forced even when already paused */
#if defined(BUGGY_STOP_RACE)
	/* source.go stopGuest as first written: looks at the run state, then
	 * calls Pause(finish-migrate) (a no-op if the VM stopped meanwhile) or
	 * EnterState(finish-migrate) (refused if it started meanwhile) */
	if
	:: SRUN ->
		atomic {
			!s_mu -> s_was_running = SRUN;
			if :: SRUN -> s_rs = FINISH :: else -> skip fi;
			stopped = true
		}
	:: !SRUN ->
		atomic {
			!s_mu -> s_was_running = SRUN;
			if :: !SRUN -> s_rs = FINISH; stopped = true :: else -> skip fi
		}
		if :: !stopped -> goto fail :: else -> skip fi
	fi;
#else
	atomic {
		!s_mu ->
		s_was_running = SRUN;
#ifdef BUGGY_PAUSED_STOP
		if :: SRUN -> s_rs = FINISH :: else -> skip fi
#else
		s_rs = FINISH
#endif
		;
		stopped = true
	}
#endif
	if :: cancel -> goto fail :: else -> skip fi;

	/* Gate.InactivateAll, under the gate's mutex */
	atomic { !s_mu -> s_mu = true }
#ifndef BUGGY_FLAG
	s_mbi = true;
#endif
	inactivate(s_act[0], err);
	inactivate(s_act[1], err);
#ifdef BUGGY_FLAG
	s_mbi = true;
#endif
	s_mu = false;
	if :: err || cancel -> goto fail :: else -> skip fi;

	/* last RAM, device state, END */
	send(s2d, STATE, err);
	if :: err -> goto fail :: else -> skip fi;

	/* wait for READY, with a timeout */
	if
	:: d2s?READY -> skip
	:: d2s?ABORT -> goto fail
	:: cut -> goto fail
	:: true -> goto fail     /* timeout */
	fi;

	/* commit point: a cancel not seen by now is refused */
#ifdef FRAME_ATOMIC
	/* source.go as written: committed once the COMMIT frame is flushed; a
	 * failed flush fails the migration. Safe only because a frame whose
	 * write failed never reaches D whole (length + CRC framing, and a
	 * socket write error means the kernel did not take every byte), so
	 * the send here is all or nothing. A cancel closes the connection,
	 * which fails the write. */
	atomic {
		if
		:: !cut -> s2d!COMMIT; s_committed = true
		:: cut -> err = true
		fi
	}
	if :: err -> goto fail :: else -> skip fi;
#else
	atomic {
		if
		:: cancel -> goto fail
		:: else -> s_committed = true
		fi
	}
	send(s2d, COMMIT, err);
#ifdef BUGGY_COMMIT
	if :: err -> goto fail :: else -> skip fi;
#endif
#endif
	/* complete: postmigrate (EnterState refuses if the VM runs); never
	 * resumes on its own from here */
	atomic { !s_mu -> if :: !SRUN -> s_rs = POST :: else -> skip fi; s_done = true }
	goto end;

fail:
	/* fail: close the connection, reactivate, resume through the gate if
	 * the VM was running, else stay paused with the reason */
	cut = true;
	atomic { !s_mu -> s_mu = true }
	if
	:: stopped ->
#ifdef BUGGY_RESUME
		/* reactivate, ignore the answer, start the vCPUs */
		s_rs = PAUSED;
		reactivate_all(s_act[0], s_act[1], s_mbi, FREE_FOR_S(0), FREE_FOR_S(1), ok);
		if :: s_was_running -> s_rs = RUNNING :: else -> skip fi;
#else
		s_rs = PAUSED;
		if
		:: s_was_running -> s_resume()
		:: else -> reactivate_all(s_act[0], s_act[1], s_mbi, FREE_FOR_S(0), FREE_FOR_S(1), ok)
		fi;
#endif
		s_autoresumed = SRUN
	:: else -> skip   /* failed before the stop: the VM was never touched */
	fi;
	s_mu = false;
	s_done = true;
end:
	skip
}

/* The incoming side (dest.go: runDest, handleCommit), then the operator's
 * `cont` on D (QMP cont -> Machine.Resume), retried while activation fails. */
active proctype Dest() {
	bool err, ok, took0, took1;
	{
		if
		:: s2d?CONFIG
		:: cut -> goto dfail
		fi;
		if
		:: true -> skip
		:: true -> d2s!ABORT; cut = true; goto dfail  /* configuration refused */
		fi;
		if
		:: s2d?STATE
		:: cut -> goto dfail
		fi;
		if
		:: true -> skip
		:: true -> d2s!ABORT; cut = true; goto dfail  /* load failed */
		fi;
		send(d2s, READY, err);
		if :: err -> goto dfail :: else -> skip fi;
		if
		:: s2d?COMMIT
		:: cut -> goto dfail
		fi;
		/* arrive: with autostart, and if the source was running (the
		 * device state says), Resume(incoming-done); else paused with the
		 * drives still inactive until cont */
		d_committed = true;
		if
		:: autostart && s_was_running -> d_resume()
		:: else -> d_rs = PAUSED
		fi;
		d_settled = true;
		/* the operator may `cont` D now; a failed activation is retried */
end_cont:
		do
		:: !faults_off && d_rs == PAUSED -> d_resume()
		:: faults_off -> break
		od;
		d_quiet = true;
		goto dend;
dfail:
		d_failed = true;
#ifdef BUGGY_DEST_CONT
		/* cont on a destination that never got COMMIT */
end_bad:
		do
		:: !faults_off && d_rs != RUNNING -> d_resume()
		:: faults_off -> break
		od;
#endif
		d_quiet = true;
dend:
		skip
	} unless { d_rs == DEAD }
}

/* Faults, and the operator's commands other than cont on S: migrate_cancel,
 * stop on S, cont on D before COMMIT (which only sets autostart). */
active proctype Env() {
end_env:
	do
	:: atomic { !faults_off -> storage_up = !storage_up }
	:: atomic { !faults_off && !cut -> cut = true }
	:: atomic { !faults_off && !cancel -> cancel = true }
	:: atomic { !faults_off && !autostart -> autostart = true }
	:: atomic { !faults_off && !s_mu && s_rs == RUNNING -> s_rs = PAUSED } /* stop on S */
	:: atomic {
		/* D crashes: the kernel drops its locks and its connection */
		!faults_off && d_rs != DEAD ->
		d_rs = DEAD; d_act[0] = false; d_act[1] = false; d_mbi = true;
		cut = true
	}
	:: faults_off -> break
	od
}

/* The operator's `cont` on S, at any time (qmp cont -> Machine.Resume). */
active proctype ContS() {
	bool ok, took0, took1;
end_conts:
	do
	:: atomic { !faults_off && !s_mu && MAY_CONT_S -> s_mu = true };
		s_resume();
		s_mu = false
	:: faults_off -> break
	od
}

/* Every run must end where an operator can get the guest running again:
 * once the migration has settled, storage comes back and faults stop, and
 * a `cont` on one side (either order, by the operator's rule) succeeds. */
active proctype Recovery() {
	bool ok, took0, took1;
	s_done && (d_settled || d_failed || d_rs == DEAD);
	atomic { faults_off = true; storage_up = true };
	atomic { !s_mu -> s_mu = true };
	(d_quiet || d_rs == DEAD);
	if
	:: true ->
		if :: MAY_CONT_S -> s_resume() :: else -> skip fi;
		if :: d_committed && d_rs == PAUSED -> d_resume() :: else -> skip fi
	:: true ->
		if :: d_committed && d_rs == PAUSED -> d_resume() :: else -> skip fi;
		if :: MAY_CONT_S -> s_resume() :: else -> skip fi
	fi;
	assert(SRUN || DRUN || prop_recoverable);
	s_mu = false
}

/* Blocks until the invariant breaks, in any interleaving; the end label
 * makes its waiting a valid end state. The assertions name the property:
 *   ONE_RUNS      never both sides running
 *   S_GATED, D_GATED  never running with an inactive drive
 *   ONE_HOLDER    at most one side holds each image
 *   S_FLAG, D_FLAG    mayBeInactive clear => every drive active
 *   D_COMMITTED   the destination runs only after COMMIT
 *   NO_AUTO_AFTER_COMMIT  the source never resumes on its own once COMMIT
 *                 is on its way */
active proctype Monitor() {
end_mon:
	atomic {
		!INVARIANT ->
		assert(ONE_RUNS || prop_one_runs);
		assert(S_GATED || prop_s_gated);
		assert(D_GATED || prop_d_gated);
		assert(ONE_HOLDER || prop_one_holder);
		assert(S_FLAG || prop_s_flag);
		assert(D_FLAG || prop_d_flag);
		assert(D_COMMITTED || prop_d_committed);
		assert(NO_AUTO_AFTER_COMMIT || prop_no_auto_after_commit)
	}
}
