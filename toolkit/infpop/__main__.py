from infpop.cli import main

raise SystemExit(main())
