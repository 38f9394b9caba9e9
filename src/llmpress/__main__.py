from llmpress.cli import main

raise SystemExit(main())
